"""`.env.example` is what a newcomer copies to `.env`: it must load as the embedded default."""

from pathlib import Path

from agent.settings import Settings, load_settings

ROOT = Path(__file__).parent.parent


def test_env_example_loads_as_the_embedded_default(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text((ROOT / ".env.example").read_text())
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.port == 7860 and settings.prices_file is None and not settings.public_base_url
    assert settings.effective_database_url.startswith("sqlite:///") and not settings.payments_enabled


def test_every_setting_is_listed_in_env_example():
    listed = (ROOT / ".env.example").read_text()
    assert [name.upper() for name in Settings.model_fields if f"{name.upper()}=" not in listed] == []
