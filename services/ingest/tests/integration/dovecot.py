"""A throwaway dovecot IMAP server for the IMAP poller's tests: Debian's dovecot-imapd, on
free loopback ports, with its config, maildirs, sockets and logs in one temporary
folder that is removed when it stops. Plain IMAP (with STARTTLS) and implicit TLS, with a
self-signed certificate the tests trust as their CA. As root, dovecot's processes run as the
``dovecot`` user (it refuses to serve mail as root); otherwise as the current user."""

from __future__ import annotations

import contextlib
import grp
import ipaddress
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aioimaplib  # type: ignore[import-untyped]

from crmkit.testing import free_port

DOVECOT = Path("/usr/sbin/dovecot")
DOVEADM = Path("/usr/bin/doveadm")
PASSWORD = "imap-password-for-the-tests"
INSTALL_HINT = ("the IMAP tests need Debian's dovecot-imapd (/usr/sbin/dovecot and /usr/bin/doveadm): "
                "sudo apt-get install dovecot-imapd")


@dataclass
class Dovecot:
    port: int  # plain IMAP, STARTTLS offered
    tls_port: int  # implicit TLS
    ca_file: Path  # the server's self-signed certificate
    root: Path
    conf: Path
    uid: int
    gid: int

    host = "127.0.0.1"
    # Every user name logs in with this password; a user's maildir is made at its first login.
    password = PASSWORD

    def doveadm(self, *args: str) -> str:
        done = subprocess.run([str(DOVEADM), "-c", str(self.conf), *args], capture_output=True,
                              text=True, timeout=30, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"doveadm {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def set_uidvalidity(self, user: str, value: int, folder: str = "INBOX") -> None:
        """What a server does when a folder is rebuilt: every UID in it means something new."""
        self.doveadm("mailbox", "update", "-u", user, "--uid-validity", str(value), folder)

    async def append(self, user: str, password: str, *messages: bytes, folder: str = "INBOX") -> None:
        client = aioimaplib.IMAP4(self.host, self.port, timeout=10)
        await client.wait_hello_from_server()
        assert (await client.login(user, password)).result == "OK"
        for message in messages:
            response = await client.append(message, mailbox=folder)
            assert response.result == "OK", response
        await client.logout()


def _config(root: Path, user: str, uid: int, gid: int, port: int, tls_port: int) -> str:
    return f"""
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
default_internal_user = {user}
default_internal_group = {grp.getgrgid(gid).gr_name}
default_login_user = {user}
first_valid_uid = {uid}
last_valid_uid = {uid}
first_valid_gid = 0
disable_plaintext_auth = no
# A refused login (the tests make some) slows nothing down.
auth_failure_delay = 0
login_trusted_networks = 127.0.0.0/8
auth_mechanisms = plain login
ssl = yes
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
ssl_min_protocol = TLSv1.2
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = static
  args = password={PASSWORD}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service auth {{
  user = {user}
}}
service auth-worker {{
  user = {user}
}}
service stats {{
  user = {user}
}}
"""


def _self_signed(root: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .sign(key, hashes.SHA256()))
    (root / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (root / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.settimeout(2)
            if sock.recv(64).startswith(b"* OK"):
                return
        time.sleep(0.05)
    output = log.read_text() if log.exists() else ""
    raise RuntimeError(f"dovecot did not start: {output[-2000:]}")


@contextlib.contextmanager
def running_dovecot() -> Iterator[Dovecot]:
    if not DOVECOT.exists() or not DOVEADM.exists():
        raise RuntimeError(INSTALL_HINT)
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("dovecot")  # dovecot will not serve mail as root
        except KeyError:
            raise RuntimeError("running as root needs the dovecot user (made by dovecot-core)") from None
    else:
        account = pwd.getpwuid(os.getuid())
    # Not under pytest's base temp: as root that is private to root, and the mail processes
    # run as dovecot.
    root = Path(tempfile.mkdtemp(prefix="crm-dovecot-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        for folder in ("run", "state", "mail"):
            (root / folder).mkdir()
        _self_signed(root)
        port, tls_port = free_port(), free_port()
        conf = root / "dovecot.conf"
        conf.write_text(_config(root, account.pw_name, account.pw_uid, account.pw_gid, port, tls_port))
        if os.geteuid() == 0:
            for path in (root, *root.rglob("*")):
                os.chown(path, account.pw_uid, account.pw_gid)
        process = subprocess.Popen([str(DOVECOT), "-F", "-c", str(conf)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.STDOUT)
        _wait_listening(port, process, root / "dovecot.log")
        yield Dovecot(port, tls_port, root / "cert.pem", root, conf, account.pw_uid, account.pw_gid)
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        shutil.rmtree(root, ignore_errors=True)
