"""The sandbox the documents run in: a reader's terminal, and nothing left behind."""

from __future__ import annotations

import socket

import pytest

from tests.docs.sandbox import Sandbox


@pytest.fixture
def sandbox():
    box = Sandbox.create()
    yield box
    box.close()


def test_exports_and_directory_carry_to_the_next_block(sandbox):
    assert sandbox.run("export GREETING=hi; mkdir -p work/here && cd work/here").returncode == 0
    result = sandbox.run('echo "$GREETING from $(pwd)"; ls -d ~/offline')
    assert result.output == f"hi from {sandbox.root}/work/here\n{sandbox.root}/offline\n"


def test_a_failing_command_fails_the_block_and_shows_its_error(sandbox):
    result = sandbox.run("true\nls does-not-exist\necho never")
    assert result.returncode == 2
    assert "does-not-exist" in result.output and "never" not in result.output


def test_documented_ports_become_free_ports_the_same_in_every_block(sandbox):
    first = sandbox.substitute("serve --port 8080; curl http://127.0.0.1:8080/ localhost:8765")
    second = sandbox.substitute("http://127.0.0.1:8080")
    port, other = sandbox.ports[8080], sandbox.ports[8765]
    assert first == f"serve --port {port}; curl http://127.0.0.1:{port}/ localhost:{other}"
    assert second == f"http://127.0.0.1:{port}" and port != 8080


def test_a_server_left_in_the_background_listens_before_the_next_block_and_is_stopped(sandbox):
    server = ("python3 -c 'import socket, sys, time; s = socket.socket(); "
              "s.bind((\"127.0.0.1\", int(sys.argv[2]))); s.listen(); time.sleep(600)' "
              "--port 8080 &")
    started = sandbox.run(server + "\nsetsid sleep 600 &")  # a second one, in its own session
    assert started.returncode == 0
    with socket.create_connection(("127.0.0.1", sandbox.ports[8080]), timeout=2):
        pass
    assert len(sandbox.processes()) == 2
    stopped = sandbox.stop()
    assert len(stopped) == 2 and sandbox.processes() == []


def test_a_file_the_document_shows_is_saved_where_the_reader_stands(sandbox):
    sandbox.run("mkdir work && cd work")
    saved = sandbox.save("conf/hello.toml", "# hello.toml\nx = 1\n")
    assert saved == sandbox.root / "work/conf/hello.toml"
    assert sandbox.run("cat conf/hello.toml").output == "# hello.toml\nx = 1\n"
