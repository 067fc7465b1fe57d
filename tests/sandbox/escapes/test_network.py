"""Network escapes: loopback servers, a host in a network namespace the test makes, DNS, raw sockets.

Every target is on this machine: a loopback server, or a veth peer in a namespace created (and deleted)
here with addresses from 10.213.0.0/16 that nothing else uses.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shopfloor.config import Settings
from shopfloor.sandbox import Command, NetworkRule, SandboxPolicy, open_sandbox

from .conftest import PRELUDE, Attack, observed


@dataclass
class Listener:
    port: int
    connections: list[str] = field(default_factory=list)


@pytest.fixture
async def loopback_server() -> AsyncIterator[Listener]:
    listener = Listener(port=0)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        listener.connections.append(str(writer.get_extra_info("peername")))
        writer.write(b"hello from the host\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    listener.port = server.sockets[0].getsockname()[1]
    yield listener
    server.close()
    await server.wait_closed()


def _connect(host: str, port: int) -> str:
    return f"report(tcp=attempt(lambda: socket.create_connection(({host!r}, {port}), timeout=2).recv(100)))"


async def test_loopback_server_outside(attack: Attack, loopback_server: Listener) -> None:
    seen = observed(await attack(_connect("127.0.0.1", loopback_server.port)))
    assert seen["tcp"]["errno"] == "EPERM"
    # With network allowed (to somewhere else), the sandbox's loopback is its own: nothing listens there.
    allowed = SandboxPolicy(isolation="bwrap", network=(NetworkRule(host="example.invalid", port=443),))
    seen = observed(await attack(_connect("127.0.0.1", loopback_server.port), policy=allowed))
    assert seen["tcp"]["errno"] == "ECONNREFUSED"
    assert loopback_server.connections == []


@dataclass
class NetnsHost:
    address: str
    port: int
    log: str


@pytest.fixture
def netns_host(tmp_path: object) -> Iterator[NetnsHost]:
    if shutil.which("ip") is None or os.geteuid() != 0:
        pytest.skip("needs root and iproute2 to make a network namespace")
    tag = secrets.token_hex(3)
    ns, host_if, ns_if = f"sf-esc-{tag}", f"sfh{tag}", f"sfn{tag}"
    octet = int(tag[:2], 16)
    host_addr, ns_addr = f"10.213.{octet}.1", f"10.213.{octet}.2"
    log = f"/tmp/sf-esc-{tag}.log"

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    ip("netns", "add", ns)
    server = None
    try:
        ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        ip("link", "set", ns_if, "netns", ns)
        ip("addr", "add", f"{host_addr}/30", "dev", host_if)
        ip("link", "set", host_if, "up")
        ip("-n", ns, "addr", "add", f"{ns_addr}/30", "dev", ns_if)
        ip("-n", ns, "link", "set", ns_if, "up")
        ip("-n", ns, "link", "set", "lo", "up")
        code = (
            "import socket,sys\n"
            "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            f"s.bind(({ns_addr!r}, 8080)); s.listen(8); print('ready', flush=True)\n"
            "while True:\n"
            "    c, a = s.accept()\n"
            f"    open({log!r}, 'a').write(a[0] + '\\n'); c.sendall(b'netns host\\n'); c.close()\n"
        )
        server = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", code], stdout=subprocess.PIPE, text=True
        )
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        # The test host is reachable from the host itself, so a denial below means the sandbox stopped it.
        with socket.create_connection((ns_addr, 8080), timeout=2) as probe:
            assert probe.recv(100) == b"netns host\n"
        yield NetnsHost(address=ns_addr, port=8080, log=log)
    finally:
        if server is not None:
            server.kill()
            server.wait()
            if server.stdout is not None:
                server.stdout.close()
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        if os.path.exists(log):
            os.unlink(log)


async def test_host_in_other_network_namespace(attack: Attack, netns_host: NetnsHost) -> None:
    log = Path(netns_host.log)
    assert (await asyncio.to_thread(log.read_text)).splitlines() == [
        netns_host.address.rsplit(".", 1)[0] + ".1"
    ]
    seen = observed(await attack(_connect(netns_host.address, netns_host.port)))
    assert seen["tcp"]["errno"] == "EPERM"
    allowed = SandboxPolicy(isolation="bwrap", network=(NetworkRule(host="example.invalid", port=443),))
    seen = observed(await attack(_connect(netns_host.address, netns_host.port), policy=allowed))
    assert seen["tcp"]["errno"] in ("ENETUNREACH", "EHOSTUNREACH")
    # Through the proxy, a host:port outside the allow-list is refused.
    script = f"""
s = socket.create_connection(('127.0.0.1', 3128), timeout=5)
s.sendall(b'CONNECT {netns_host.address}:{netns_host.port} HTTP/1.1\\r\\n\\r\\n')
report(reply=s.recv(200).decode())
"""
    seen = observed(await attack(script, policy=allowed))
    assert seen["reply"].startswith("HTTP/1.1 403")
    assert len((await asyncio.to_thread(log.read_text)).splitlines()) == 1  # only the host's own probe


@pytest.fixture
async def dns_server() -> AsyncIterator[Listener]:
    listener = Listener(port=53)

    class Protocol(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            listener.connections.append(f"{addr} {data!r}")

    loop = asyncio.get_running_loop()
    try:
        transport, _ = await loop.create_datagram_endpoint(Protocol, local_addr=("127.0.0.1", 53))
    except OSError:
        transport, _ = await loop.create_datagram_endpoint(Protocol, local_addr=("127.0.0.1", 0))
        listener.port = transport.get_extra_info("sockname")[1]
    yield listener
    transport.close()


async def test_dns_through_a_resolver_on_loopback(attack: Attack, dns_server: Listener) -> None:
    port = dns_server.port
    script = f"""
report(
    lookup=attempt(lambda: socket.getaddrinfo('exfiltrate.example.test', 80)),
    udp=attempt(
        lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'q', ('127.0.0.1', {port}))
    ),
)
"""
    seen = observed(await attack(script))
    assert seen["udp"]["errno"] == "EPERM"
    assert not seen["lookup"]["ok"]
    allowed = SandboxPolicy(isolation="bwrap", network=(NetworkRule(host="example.invalid", port=443),))
    seen = observed(await attack(script, policy=allowed))
    assert not seen["lookup"]["ok"]
    await asyncio.sleep(0.1)
    assert dns_server.connections == []


async def test_raw_packet_and_netlink_sockets(attack: Attack) -> None:
    script = """
report(
    raw=attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)),
    raw6=attempt(lambda: socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)),
    packet=attempt(lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))),
    netlink=attempt(lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)),
    unix=attempt(lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)),
)
"""
    for policy in (
        None,
        SandboxPolicy(isolation="bwrap", network=(NetworkRule(host="example.invalid", port=443),)),
    ):
        seen = observed(await attack(script, policy=policy))
        for kind in ("raw", "raw6", "packet", "netlink"):
            assert seen[kind]["errno"] == "EPERM", (kind, seen[kind])
        assert seen["unix"]["ok"]


FLOOD = """
held, replies = [], {}
for _ in range(200):
    try:
        s = socket.create_connection(('127.0.0.1', 3128), timeout=5)
        s.sendall(b'CONNECT 127.0.0.1:%d HTTP/1.1\\r\\n\\r\\n' % int(sys.argv[1]))
        status = s.recv(100).split(b'\\r\\n')[0].decode() or 'closed'
    except OSError as exc:
        s, status = None, errno.errorcode.get(exc.errno, str(exc.errno))
    replies[status] = replies.get(status, 0) + 1
    held.append(s)
time.sleep(float(sys.argv[2]))
report(replies=replies)
"""

TUNNEL = """
s = socket.create_connection(('127.0.0.1', 3128), timeout=5)
s.sendall(b'CONNECT 127.0.0.1:%d HTTP/1.1\\r\\n\\r\\n' % int(sys.argv[1]))
report(reply=s.recv(100).split(b'\\r\\n')[0].decode())
"""


async def test_proxy_flood_does_not_starve_another_sandbox(
    isolation: str, sandbox_settings: Settings, tmp_path: Path
) -> None:
    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cap = 16
    policy = SandboxPolicy(
        isolation=isolation,  # type: ignore[arg-type]
        network=(NetworkRule(host="127.0.0.1", port=port),),
        egress_connections=cap,
        egress_rate=1000,
        timeout=40,
    )

    def host_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    def argv(script: str, *args: str) -> list[str]:
        return ["/usr/bin/python3", "-c", PRELUDE + script, str(port), *args]

    try:
        async with (
            await open_sandbox(
                policy, workspace=tmp_path / "a", tenant="flooder", settings=sandbox_settings
            ) as flooder,
            await open_sandbox(
                policy, workspace=tmp_path / "b", tenant="neighbour", settings=sandbox_settings
            ) as neighbour,
        ):
            proxy = getattr(flooder, "inner", flooder).proxy
            before = host_fds()
            flood = asyncio.ensure_future(flooder.exec(Command(argv=tuple(argv(FLOOD, "4")))))
            for _ in range(400):  # until the flood is held at the cap
                if (proxy.open == cap and proxy.refused > 0) or flood.done():
                    break
                await asyncio.sleep(0.025)
            during = host_fds()
            other = await neighbour.exec(Command(argv=tuple(argv(TUNNEL))))
            flooded = await flood
            after = await flooder.exec(
                Command(argv=tuple(argv(TUNNEL)))
            )  # the proxy survived and freed the slots
    finally:
        server.close()
        await server.wait_closed()
    replies = observed(flooded)["replies"]
    assert replies.get("HTTP/1.1 200 Connection established") == cap, replies
    assert sum(replies.values()) == 200
    # Per allowed connection: the proxy's two fds and the upstream server's (it runs in this process too).
    assert during - before <= 3 * cap + 8, (before, during)
    assert observed(other)["reply"] == "HTTP/1.1 200 Connection established"
    assert observed(after)["reply"] == "HTTP/1.1 200 Connection established"
