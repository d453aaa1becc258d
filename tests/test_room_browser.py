"""A real browser in the test room: headless Chromium with a fake microphone fed from a WAV."""

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.phone_rig import DATA
from tests.test_local_llama import needs_model
from tests.test_webrtc_room import RoomRig

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent.parent / "test-artifacts"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")


def _browser_wav(tmp_path: Path, source: Path) -> Path:
    """Chromium's fake microphone wants 16-bit PCM; pad with silence so the persona has time to answer."""
    path = tmp_path / f"mic-{source.stem}.wav"
    subprocess.run(["sox", str(source), "-r", "48000", "-c", "1", "-b", "16", str(path),
                    "pad", "1", "20"], check=True)
    return path


async def _launch(playwright, microphone: Path):
    """Debian's Chromium, headless, offline, with a fake microphone that plays `microphone` (in a loop)."""
    return await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
        "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone}"])


async def _connected_room(playwright, rig, microphone: Path):
    """Chromium on the room page, Brad chosen, Connect pressed: (browser, page)."""
    browser = await _launch(playwright, microphone)
    page = await browser.new_page()
    await page.goto(f"{rig.server.http_url}/room/")
    await page.select_option("#persona", "brad")
    await page.click("#connect")
    return browser, page


@pytest.mark.parametrize("vendors, said, heard, answered", [
    (True, "hello.wav", "how are you doing today", "browser friend"),
    (False, "dinner.wav", "last night", "offline demo script"),  # Whisper, through Opus and a fake mic
], ids=["vendor-fakes", "no-keys"])
async def test_the_room_shows_the_transcript_and_a_running_cost(tmp_path, vendors, said, heard, answered):
    """With the vendors' fakes, and with no keys at all (Whisper, the offline script and Piper)."""
    from playwright.async_api import async_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with RoomRig(tmp_path, ["Hi Brad, how are you doing today?"], ["Hey there, browser friend!"],
                 vendors=vendors) as rig:
        async with async_playwright() as p:
            browser = await _launch(p, _browser_wav(tmp_path, DATA / said))
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(f"{rig.server.http_url}/room/")
            await page.select_option("#persona", "brad")
            await page.click("#connect")
            # The persona's reply arrives sentence by sentence: wait for the words we expect.
            await page.wait_for_function(
                "([heard, answered]) => { const t = document.getElementById('transcript').innerText.toLowerCase();"
                " return t.includes(heard) && t.includes(answered); }", arg=[heard, answered], timeout=40_000)
            await page.wait_for_function("document.getElementById('total').textContent !== '$0.00'",
                                         timeout=15_000)
            await page.screenshot(path=str(ARTIFACTS / f"room-{'vendors' if vendors else 'no-keys'}.png"),
                                  full_page=True)
            user_text = await page.inner_text(".turn.user")
            bot_text = " ".join(await page.locator(".turn.bot").all_inner_texts())
            total = await page.inner_text("#total")
            await page.click("#hangup")
            await browser.close()
    assert heard in user_text.lower()
    assert answered in bot_text.lower()
    assert total.startswith("$") and float(total[1:]) > 0
    assert errors == []


async def test_the_budget_warning_appears_in_the_rooms_transcript(tmp_path):
    from playwright.async_api import async_playwright

    from agent.books.budgets import BudgetManager, BudgetSettings
    from storage.users import UserStore

    with RoomRig(tmp_path, ["Hi Brad, how are you doing today?"] * 4, ["Hey there, browser friend!"] * 4) as rig:
        await BudgetManager(UserStore(rig.calls.db), rig.calls).save_settings("demo", BudgetSettings(
            per_call_limit_micros=500_000, daily_limit_micros=500_000, warning_threshold_pct=1))
        async with async_playwright() as p:
            browser, page = await _connected_room(p, rig, _browser_wav(tmp_path, DATA / "hello.wav"))
            notice = page.locator(".turn.notice")  # the fake microphone says hello again every ~22 s
            await notice.first.wait_for(timeout=90_000)
            text = await notice.first.inner_text()
            await page.click("#hangup")
            await browser.close()
    assert "Just so you know" in text and "$0.50" in text


async def test_the_room_says_where_each_memory_came_from(tmp_path):
    """A fact learned in a call shows that call's date, the words it came from and what it replaced."""
    from playwright.async_api import async_playwright

    from agent.memory.relationships import PersonaRelationshipManager
    from storage.memory import MemoryStore

    with RoomRig(tmp_path, [], []) as rig:
        memory = PersonaRelationshipManager(MemoryStore(rig.calls.db))
        await memory.add_fact("demo", "brad", "user_facts", "dog_name", "Rex", source="user")
        await memory.add_fact("demo", "brad", "user_facts", "dog_name", "Biscuit", source="extraction",
                              call_id="call-1", said="My dog is called Biscuit now.")
        async with async_playwright() as p:
            browser = await _launch(p, _browser_wav(tmp_path, DATA / "hello.wav"))
            page = await browser.new_page()
            await page.goto(f"{rig.server.http_url}/room/")
            await page.select_option("#persona", "brad")
            item = page.locator("#memories li", has_text="Biscuit")
            await item.wait_for(timeout=15_000)
            text, title = await item.inner_text(), await item.get_attribute("title")
            await browser.close()
    assert "learned in your call of" in text and 'was "Rex"' in text
    assert title == 'You said: "My dog is called Biscuit now."'


async def test_the_api_docs_render_their_operations_with_nothing_from_the_internet(tmp_path):
    from playwright.async_api import async_playwright

    with RoomRig(tmp_path, [], []) as rig:
        async with async_playwright() as p:
            browser = await _launch(p, _browser_wav(tmp_path, DATA / "hello.wav"))
            page = await browser.new_page()
            outside: list[str] = []
            page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(rig.server.http_url) else None)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(f"{rig.server.http_url}/docs")
            await page.locator(".opblock").first.wait_for(timeout=20_000)
            operations = await page.locator(".opblock").count()
            await browser.close()
    assert operations >= 20 and errors == [] and outside == []


async def test_say_hello_appears_only_once_the_greeting_has_started(tmp_path):
    from playwright.async_api import async_playwright

    with RoomRig(tmp_path, ["Hi Brad, how are you doing today?"], ["Hey there, browser friend!"]) as rig:
        async with async_playwright() as p:
            browser, page = await _connected_room(p, rig, _browser_wav(tmp_path, DATA / "hello.wav"))
            await page.wait_for_function(
                "document.getElementById('status').textContent.includes('say hello')", timeout=30_000)
            log = await page.evaluate("window.roomLog")
            await page.click("#hangup")
            await browser.close()
    statuses = [e["text"] for e in log if e["event"] == "status"]
    assert statuses.index("Connected: the persona is getting ready…") < statuses.index("Connected: say hello")
    spoke = [e["at"] for e in log if e["event"] == "bot-started-speaking"]
    hello = next(e["at"] for e in log if e["event"] == "status" and e["text"] == "Connected: say hello")
    assert spoke and spoke[0] <= hello  # the greeting had begun: what the caller says now is heard


def _spoken(tmp_path: Path, name: str, text: str) -> Path:
    """`text` said by the packaged Piper voice, as a microphone in the room would hear a caller."""
    import wave

    from pipeline.local_engines import shared_piper_voice

    voice = shared_piper_voice()
    path = tmp_path / f"{name}.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(voice.config.sample_rate)
        for chunk in voice.synthesize(text):
            out.writeframes(chunk.audio_int16_bytes)
    return path


async def _room_call(playwright, rig, microphone: Path, until: str, *, heard: str = "",
                     timeout: float = 60_000) -> str:
    """One call in the room with no keys; returns the persona's words once `until` is among them and,
    if given, the caller's words `heard` were transcribed and answered (Whisper may split a sentence
    into turns at a pause, so the words a test needs are waited for, not assumed in one turn)."""
    browser, page = await _connected_room(playwright, rig, microphone)
    await page.wait_for_function(
        "([words, heard]) => { const text = (kind) => [...document.querySelectorAll('.turn.' + kind)]"
        ".map(t => t.innerText.toLowerCase()).join(' '); const turns = document.querySelectorAll('.turn');"
        " return text('bot').includes(words) && (!heard || (text('user').includes(heard)"
        " && turns[turns.length - 1].classList.contains('bot'))); }", arg=[until.lower(), heard.lower()],
        timeout=timeout)
    said = " ".join(await page.locator(".turn.bot").all_inner_texts())
    await page.click("#hangup")
    await browser.close()
    return said


async def test_with_no_keys_the_second_call_knows_the_name_and_the_topic_of_the_first(tmp_path):
    """The embedded default end to end: Whisper hears the caller, the offline script answers from the
    composite prompt, its post-call extraction stores the name and topics, and call 2 uses them."""
    import asyncio

    from playwright.async_api import async_playwright

    first = _browser_wav(tmp_path, _spoken(tmp_path, "first", "Hi Brad, my name is Sam. I just got back from "
                                                               "a hiking trip."))
    second = _browser_wav(tmp_path, _spoken(tmp_path, "second", "Do you remember what we talked about?"))
    with RoomRig(tmp_path, [], [], vendors=False) as rig:
        async with async_playwright() as p:
            said = await _room_call(p, rig, first, "nice to meet you, sam", heard="hiking")
            for _ in range(100):  # the first call's memories are written after it ends
                names = [f for f in (await rig.memory_snapshot()).facts.get("user_facts", []) if f.key == "name"]
                if names:
                    break
                await asyncio.sleep(0.2)
            assert names and names[0].value == "Sam", said
            recalled = await _room_call(p, rig, second, "hiking")
    assert "hey sam, it's brad" in recalled.lower()  # greeted by name
    assert "we talked about hiking" in recalled.lower()  # and the last call's topic recalled


async def test_the_budget_page_says_what_is_wrong_in_words(tmp_path):
    from playwright.async_api import async_playwright

    with RoomRig(tmp_path, [], []) as rig:
        async with async_playwright() as p:
            browser = await _launch(p, _browser_wav(tmp_path, DATA / "hello.wav"))
            page = await browser.new_page()
            await page.goto(f"{rig.server.http_url}/room/budget.html")
            await page.wait_for_function("document.querySelector('input[name=daily_limit_usd]').value !== ''",
                                         timeout=10_000)  # signed in and loaded
            await page.fill("input[name=per_call_limit_usd]", "0.40")
            await page.click("#budget button")
            await page.wait_for_function("document.getElementById('saved').textContent !== ''", timeout=10_000)
            said = await page.inner_text("#saved")
            links = await page.locator("nav a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
            await browser.close()
    assert said.startswith("Not saved: per_call_limit_usd:") and "{" not in said and "$0.50" in said
    assert "/docs" in links


@needs_model
async def test_with_the_local_llm_a_real_model_answers_in_the_room(tmp_path):
    """`make run-llama`'s first minute: no keys, Whisper hears the caller, the in-process model answers."""
    from playwright.async_api import async_playwright

    from engines.offline_script import DEMO_ANSWER

    with RoomRig(tmp_path, [], [], vendors=False, local_llm="llama-cpp") as rig:
        async with async_playwright() as p:
            browser, page = await _connected_room(p, rig, _browser_wav(tmp_path, DATA / "hello.wav"))
            assert "a small model in this process" in await page.inner_text("#engines")
            await page.wait_for_function(
                "() => { const turns = [...document.querySelectorAll('.turn')];"
                " const heard = turns.findIndex(t => t.classList.contains('user'));"
                " return heard >= 0 && turns.slice(heard + 1).some(t => t.classList.contains('bot')); }",
                timeout=90_000)
            bot = await page.locator(".turn.bot").all_inner_texts()
            await page.click("#hangup")
            await browser.close()
    reply = " ".join(bot[1:]).strip()
    assert reply and "offline demo script" not in reply and DEMO_ANSWER[:20] not in reply, bot
