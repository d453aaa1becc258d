"""No Docker engine runs here, so test what the Dockerfile relies on: its paths and its commands."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from fakes import ServedApp

ROOT = Path(__file__).parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_every_copied_path_exists():
    sources = [part for line in re.findall(r"^COPY (.+)$", DOCKERFILE, re.M) for part in line.split()[:-1]]
    assert sources and all((ROOT / source).exists() for source in sources), sources


def test_the_image_runs_as_a_non_root_user():
    assert re.search(r"^USER (?!root)\w+", DOCKERFILE, re.M)


def test_the_health_check_command_passes_against_a_running_server(tmp_path):
    from agent.settings import Settings
    from server import create_app

    command = re.search(r'CMD (python -c .+)$', DOCKERFILE, re.M).group(1)
    settings = Settings(_env_file=None, data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'h.db'}")
    with ServedApp(create_app(settings), lifespan="on") as served:
        args = shlex.split(command)
        args[0] = sys.executable
        ok = subprocess.run(args, env={**os.environ, "PORT": str(served.port)}, capture_output=True, timeout=20)
    assert ok.returncode == 0, ok.stderr
    down = subprocess.run(args, env={**os.environ, "PORT": "1"}, capture_output=True, timeout=20)
    assert down.returncode != 0  # and it fails when nothing answers
