"""``lessongate web`` as a process (HTTPS on 127.0.0.1), and ``lessongate run`` starting it."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from appliance.cli.main import main
from tests.conftest import EXAMPLE, ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serves_https_with_a_self_signed_certificate(tmp_path: Path) -> None:
    port = free_port()
    state = tmp_path / "state"
    argv = [sys.executable, "-m", "appliance.cli.main", "web", "--config", str(EXAMPLE),
            "--state", str(state), "--listen", f"127.0.0.1:{port}"]  # fmt: skip
    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"https://127.0.0.1:{port}/api/v1/me", context=context)
            except urllib.error.HTTPError as error:
                assert error.code == 401
                assert json.loads(error.read()) == {"error": "not signed in"}
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "did not start"
                time.sleep(0.1)
        assert (state / "web" / "cert.pem").is_file() and (state / "web" / "key.pem").is_file()
        assert (state / "web.db").is_file()
        with pytest.raises(OSError):  # plain HTTP is not served (refused, or hung up on)
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=10)
    # Uvicorn shuts down cleanly, then dies of the signal it caught, as a process should.
    assert process.returncode == -signal.SIGTERM
    assert b"teachers' page on https://127.0.0.1:" in output
    assert b"Finished server process" in output


def test_listen_must_be_an_address(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["web", "--config", str(EXAMPLE), "--listen", "everywhere"])
    assert exit.value.code == 2
    assert '"everywhere" is not ADDRESS:PORT' in capsys.readouterr().err


@pytest.mark.parametrize("flag", [[], ["--no-web"]])
def test_run_starts_the_web_page_unless_told_not_to(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: list[str]
) -> None:
    clock = tmp_path / "clock"
    argv = ["run", "--config", str(EXAMPLE), "--state", str(tmp_path), "--clock", str(clock)]
    assert main([*argv, "--dry-run", *flag]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("# web:")]
    if flag:
        assert lines == []
    else:
        assert lines == [
            f"# web: {sys.executable} -m appliance.cli.main web --config {EXAMPLE}"
            f" --state {tmp_path} --clock {clock}"
        ]
