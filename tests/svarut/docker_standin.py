"""A `docker` stand-in for the real-sshd tests: `docker compose` that runs a real nginx.

Installed (with this Python as interpreter) as `<base>/bin/docker`, first on sudo's
secure_path for the test user. It emulates `docker compose [--env-file F] down | up -d |
ps [-a] [--format json] | run --rm --no-deps -T nginx nginx -t` in the current folder
(`run ... nginx -t` tests the files the env file names with the real `nginx -t`, in a state
folder of its own, leaving the running nginx alone): `up -d` reads the env file like compose,
writes an nginx config that serves TLS with the files the env file names (from the
installation's certificate folder) and starts that nginx in the background, returning at
once like compose does — an nginx that refuses the files exits, and `ps -a` then shows the
container exited. Its settings live in `<base>/standin.json` (sudo strips the environment):
per compose folder the TLS port, the certificate folder, `ps_format` (`lines` as compose
>= 2.21, or `array` as older compose) and a `fail_next_up` fault.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cosdoc_certs.envfile import parse_env

SETTINGS = Path(__file__).resolve().parent.parent / "standin.json"
NGINX_CONF = """\
daemon off;
worker_processes 1;
pid {state}/nginx.pid;
error_log {state}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {state}/body;
    proxy_temp_path {state}/proxy;
    fastcgi_temp_path {state}/fastcgi;
    uwsgi_temp_path {state}/uwsgi;
    scgi_temp_path {state}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{ return 200 "svarut\\n"; }}
    }}
}}
"""


def _fail(message: str, status: int = 1) -> int:
    print(message, file=sys.stderr)
    return status


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _stop(state: Path) -> None:
    record = state / "container.json"
    if not record.exists():
        return
    pid = json.loads(record.read_text())["pid"]
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    record.unlink()


def _files(folder: str, env_path: Path, settings: dict) -> tuple[Path, Path]:
    """The certificate and key the env file names, in the installation's certificate folder."""
    env = parse_env(env_path.read_bytes())
    files = Path(folder, settings.get("files_dir", "persistent"))
    cert = files / (env.get("SSL_CERT_FILENAME") or "missing.crt")
    key = files / (env.get("SSL_CERT_KEY_FILENAME") or "missing.rsa")
    return cert, key


def _write_conf(state: Path, port: int, cert: Path, key: Path) -> Path:
    for temp in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (state / temp).mkdir(exist_ok=True)
    conf = state / "nginx.conf"
    conf.write_text(NGINX_CONF.format(state=state, port=port, cert=cert, key=key))
    return conf


def _test(folder: str, env_file: str, state: Path, settings: dict, command: list[str]) -> int:
    """`run --rm --no-deps -T nginx nginx -t`: the real `nginx -t` on the env file's files."""
    words = [word for word in command if word not in ("--rm", "--no-deps", "-T")]
    if words[1:] != ["nginx", "-t"]:
        return _fail(f"stand-in: unsupported docker compose run {' '.join(command)}")
    env_path = Path(folder, env_file)
    if not env_path.is_file():
        return _fail(f"couldn't find env file: {env_path}", 14)
    throwaway = state / "throwaway"
    throwaway.mkdir(exist_ok=True)
    conf = _write_conf(throwaway, settings["port"], *_files(folder, env_path, settings))
    checked = subprocess.run(
        ["/usr/sbin/nginx", "-t", "-p", str(throwaway), "-c", str(conf), "-e", "stderr"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    sys.stderr.write(checked.stderr)
    return checked.returncode


def _start(folder: str, env_file: str, state: Path, settings: dict, all_settings: dict) -> int:
    env_path = Path(folder, env_file)
    if not env_path.is_file():
        return _fail(f"couldn't find env file: {env_path}", 14)
    cert, key = _files(folder, env_path, settings)
    if settings.get("fail_next_up"):
        settings["fail_next_up"] = False
        SETTINGS.write_text(json.dumps(all_settings))
        cert = cert.with_name("no-such-file.crt")  # nginx will refuse to start: the container exits
    conf = _write_conf(state, settings["port"], cert, key)
    with open(state / "stderr.log", "ab") as log:
        process = subprocess.Popen(
            ["/usr/sbin/nginx", "-p", str(state), "-c", str(conf), "-e", str(state / "error.log")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
    (state / "container.json").write_text(json.dumps({"pid": process.pid}))
    return 0


def _ps(folder: str, state: Path, settings: dict, show_all: bool) -> int:
    record = state / "container.json"
    if not record.exists():
        print("[]" if settings.get("ps_format") == "array" else "", end="")
        return 0
    running = _alive(json.loads(record.read_text())["pid"])
    items = []
    if running or show_all:
        items.append(
            {
                "Name": f"{Path(folder).name}-nginx-1",
                "Service": "nginx",
                "State": "running" if running else "exited",
                "ExitCode": 0 if running else 1,
            }
        )
    if settings.get("ps_format") == "array":
        print(json.dumps(items))
    else:
        for item in items:
            print(json.dumps(item))
    return 0


def main(argv: list[str]) -> int:
    """Run the emulated `docker compose` command."""
    if argv[:1] != ["compose"]:
        return _fail("this docker stand-in only knows `docker compose`")
    args = argv[1:]
    env_file = ".env"
    if args[:1] == ["--env-file"]:
        env_file, args = args[1], args[2:]
    folder = os.getcwd()
    if not Path(folder, "compose.yaml").is_file():
        return _fail("no configuration file provided: not found", 14)
    all_settings = json.loads(SETTINGS.read_text())
    settings = all_settings["installations"].get(folder)
    if settings is None:
        return _fail(f"stand-in: no settings for {folder}")
    state = Path(all_settings["state"], hashlib.sha256(folder.encode()).hexdigest()[:16])
    state.mkdir(parents=True, exist_ok=True)
    if args == ["down"]:
        _stop(state)
        return 0
    if args == ["up", "-d"]:
        _stop(state)
        return _start(folder, env_file, state, settings, all_settings)
    if args[:1] == ["ps"]:
        return _ps(folder, state, settings, "-a" in args)
    if args[:1] == ["run"]:
        return _test(folder, env_file, state, settings, args[1:])
    return _fail(f"stand-in: unsupported docker compose {' '.join(args)}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
