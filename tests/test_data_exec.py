"""Reading a volume's token through a pod exec leaves the caller's API client alone: the
watcher's threads share that client, and kubernetes.stream swaps the method that sends the
requests of the client it is handed for the length of the exec, which turned their watches
into failed websocket handshakes ("Handshake status 400") on kind."""

from __future__ import annotations

import socket
import threading

from kubernetes import client

from zoneproof import data


def test_an_exec_in_flight_does_not_touch_the_shared_api_client():
    server = socket.create_server(("127.0.0.1", 0))
    accepted, release = threading.Event(), threading.Event()

    def hold_the_handshake():
        connection, _ = server.accept()
        accepted.set()
        release.wait(10)  # the exec is in flight until this answer
        connection.close()

    threading.Thread(target=hold_the_handshake, daemon=True).start()
    config = client.Configuration(host=f"http://127.0.0.1:{server.getsockname()[1]}")
    core = client.CoreV1Api(client.ApiClient(config))
    shared_call = core.api_client.call_api
    pod = client.V1Pod(metadata=client.V1ObjectMeta(name="web-0"), spec=client.V1PodSpec(containers=[
        client.V1Container(name="web", volume_mounts=[client.V1VolumeMount(name="www", mount_path="/www")])]))
    raised: list[BaseException] = []

    def exec_read():
        try:
            data.read_token(core, "ns", pod)
        except Exception as err:  # noqa: BLE001 - the server never answers; kept and checked below
            raised.append(err)

    reader = threading.Thread(target=exec_read)
    reader.start()
    try:
        assert accepted.wait(10), "the exec never reached the API server"
        assert core.api_client.call_api == shared_call, \
            "the shared client's requests go out as websocket handshakes while the exec runs"
    finally:
        release.set()
        reader.join(10)
        server.close()
    assert len(raised) == 1, "an exec against a server that closed the connection did not fail"
