"""A real IMAP server (Debian's ``dovecot-imapd``) on 127.0.0.1 for the bounce mailbox tests and bench.

:class:`DovecotServer` writes a private ``dovecot.conf`` in a temporary folder (its own base_dir,
state_dir and log; IMAP only, on a free loopback port, plaintext login allowed because it is
loopback; a passwd-file with one user, :data:`USER`; maildir under the folder, owned by whoever runs
the tests) and starts ``dovecot -F`` in the foreground. :meth:`DovecotServer.append` puts a message
in the mailbox over IMAP, as a relay's delivery would.
"""

from __future__ import annotations

import contextlib
import getpass
import grp
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from imapclient import IMAPClient
from server_process import free_port, start_listening, stop_process

USER = "bounces@example.com"
PASSWORD = "imap-test-password"

CONF = """\
base_dir = {run}
state_dir = {folder}/state
log_path = {folder}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 0
default_internal_user = {internal}
default_internal_group = {group}
default_login_user = {login}
mail_location = maildir:{mail}/mail/%n
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {folder}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={mail}/home/%n
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service auth {{
  user = {auth}
}}
service auth-worker {{
  user = {auth}
}}
service imap-login {{
  chroot =
}}
"""


def _service_users() -> dict[str, str]:
    """Dovecot's own processes: as root, its Debian users (login must not run as root); else ours."""
    if os.getuid() == 0:
        with contextlib.suppress(KeyError):
            pwd.getpwnam("dovenull")
            return {"internal": "dovecot", "group": "dovecot", "login": "dovenull", "auth": "root"}
    me = getpass.getuser()
    return {"internal": me, "group": grp.getgrgid(os.getgid()).gr_name, "login": me, "auth": me}


class DovecotServer:
    """dovecot on 127.0.0.1; ``start()`` returns ``imap://127.0.0.1:PORT``."""

    def __init__(self, folder: Path, dovecot: str = "/usr/sbin/dovecot", port: int = 0) -> None:
        self.folder = folder
        self.dovecot = dovecot
        self.port = port  # 0: a free one, chosen by configure()
        self.url = ""
        self.process: subprocess.Popen[bytes] | None = None
        self.mail = folder
        # Its unix sockets live in base_dir; a path under pytest's tmp_path (longer under pytest-xdist)
        # can pass the 108 bytes a socket path may have, so base_dir is a short folder of its own.
        self.run = Path(tempfile.mkdtemp(prefix="hdv-", dir="/tmp"))

    def configure(self) -> Path:
        (self.folder / "state").mkdir(parents=True, exist_ok=True)
        uid, gid = os.getuid(), os.getgid()
        if uid == 0:  # dovecot never reads mail as root: a mail folder of its own user, outside ours
            uid, gid = pwd.getpwnam("dovecot").pw_uid, pwd.getpwnam("dovecot").pw_gid
            self.mail = Path(tempfile.mkdtemp(prefix="herald-dovecot-"))
            os.chown(self.mail, uid, gid)
        (self.folder / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n", encoding="utf-8")
        self.port = self.port or free_port()
        conf = self.folder / "dovecot.conf"
        conf.write_text(
            CONF.format(
                folder=self.folder,
                run=self.run,
                **_service_users(),
                uid=uid,
                gid=gid,
                mail=self.mail,
                port=self.port,
            ),
            encoding="utf-8",
        )
        return conf

    def start(self, timeout: float = 15.0) -> str:
        conf = self.configure()
        self.url = f"imap://127.0.0.1:{self.port}"
        argv = [self.dovecot, "-F", "-c", str(conf)]
        try:
            self.process = start_listening(argv, self.folder / "stdout.log", self.port, timeout, self.logs)
        except RuntimeError:
            self.stop()
            raise
        return self.url

    def logs(self) -> str:
        texts = [(self.folder / name) for name in ("stdout.log", "dovecot.log")]
        return "\n".join(p.read_text(errors="replace")[-2000:] for p in texts if p.exists())

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None
        if self.mail != self.folder:
            shutil.rmtree(self.mail, ignore_errors=True)
        shutil.rmtree(self.run, ignore_errors=True)

    def client(self) -> IMAPClient:
        imap = IMAPClient("127.0.0.1", port=self.port, ssl=False, timeout=10)
        imap.login(USER, PASSWORD)
        return imap

    def append(self, message: bytes, folder: str = "INBOX") -> None:
        """Deliver ``message`` into ``folder`` over IMAP APPEND (unread)."""
        imap = self.client()
        try:
            imap.append(folder, message)
        finally:
            imap.logout()

    def seen(self, folder: str = "INBOX") -> tuple[int, int]:
        """(messages flagged \\Seen, all messages) in ``folder``."""
        imap = self.client()
        try:
            imap.select_folder(folder, readonly=True)
            return len(imap.search(["SEEN"])), len(imap.search(["ALL"]))
        finally:
            imap.logout()
