"""What an authenticated SFTP client may do with files: the paramiko ``SFTPServerInterface`` of one session.

Every path goes through ``gateway.sftp_paths`` (virtual, confined); files are opened relative to a folder
descriptor with ``O_NOFOLLOW``. An upload is written to a hidden temporary name in the target folder and
renamed into place only when the client closes the handle (``UploadHandle.commit``); a session that ends
with the handle still open (a dropped connection, a killed client) leaves nothing behind (``abort``).
Symlinks, hard links, directories, chown and setuid/setgid/sticky bits are refused; files are always mode 0640.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paramiko
import structlog
from paramiko.sftp import SFTP_EOF, SFTP_FAILURE, SFTP_NO_SUCH_FILE, SFTP_OK, SFTP_OP_UNSUPPORTED
from paramiko.sftp import SFTP_PERMISSION_DENIED as DENIED

from gateway.config import Config
from gateway.feedback import feedback_folder
from gateway.sftp_accounts import Account
from gateway.sftp_ledger import UploadLedger
from gateway.sftp_paths import INTERNAL_PREFIX, Area, Place, folder_entries, normalize, resolve

if TYPE_CHECKING:
    from typing_extensions import Buffer

log = structlog.get_logger("gateway.sftp")
FILE_MODE = 0o640
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
SPECIAL_BITS = stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX


@dataclass
class Session:
    """One logged-in connection: who, from where, and what it may reach."""

    account: Account
    address: str
    codes: tuple[str, ...]
    config: Config
    ledger: UploadLedger
    last_activity: float = field(default_factory=time.monotonic)

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def refuse(self, op: str, path: str, reason: str) -> int:
        log.warning("sftp_refused", account=self.account.name, address=self.address, op=op, path=path, reason=reason)
        return DENIED

    def folder(self, place: Place) -> Path:
        assert place.code is not None
        if place.area is Area.UPLOADS:
            return self.config.inbox_dir / place.code
        folder = feedback_folder(self.config, self.account.name, place.code)
        folder.mkdir(mode=0o750, parents=True, exist_ok=True)
        return folder


def _flags(attr: paramiko.SFTPAttributes) -> int:
    """Which fields a SETSTAT carries (paramiko keeps them in a private attribute)."""
    return int(getattr(attr, "_flags", 0))


def _status(exc: OSError) -> int:
    return int(paramiko.SFTPServer.convert_errno(exc.errno or errno.EIO))


def _dir_attrs(name: str, mode: int = 0o750) -> paramiko.SFTPAttributes:
    attrs = paramiko.SFTPAttributes()
    attrs.filename = name
    attrs.st_mode = stat.S_IFDIR | mode
    attrs.st_size = 0
    attrs.st_uid = attrs.st_gid = 0
    attrs.st_atime = attrs.st_mtime = int(time.time())
    return attrs


def _file_attrs(st: os.stat_result, name: str) -> paramiko.SFTPAttributes:
    attrs = paramiko.SFTPAttributes.from_stat(st, name)
    attrs.st_uid = attrs.st_gid = 0  # the gateway's own ids are none of the client's business
    return attrs


class ReadHandle(paramiko.SFTPHandle):
    def __init__(self, fd: int):
        super().__init__()
        self.fd = fd

    def read(self, offset: int, length: int) -> bytes | int:
        try:
            return os.pread(self.fd, length, offset)
        except OSError as exc:
            return _status(exc)

    def write(self, offset: int, data: Buffer) -> int:
        return DENIED

    def stat(self) -> paramiko.SFTPAttributes | int:
        return _file_attrs(os.fstat(self.fd), "")

    def chattr(self, attr: paramiko.SFTPAttributes) -> int:
        return DENIED

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class UploadHandle(paramiko.SFTPHandle):
    """An upload into ``folder`` under ``name``, written to a hidden temporary file until it is closed."""

    def __init__(self, session: Session, place: Place, dir_fd: int):
        super().__init__()
        assert place.code is not None and place.name is not None
        self.session = session
        self.code = place.code
        self.name = place.name
        self.dir_fd = dir_fd
        self.temp = f"{INTERNAL_PREFIX}upload-{secrets.token_hex(8)}"
        self.fd = os.open(
            self.temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE, dir_fd=dir_fd
        )
        os.fchmod(self.fd, FILE_MODE)  # the process umask never widens or narrows what we promise
        self.size = 0
        self.reserved = 0
        self.sha = hashlib.sha256()
        self.hashed = 0
        self.sequential = True
        self.failure: str | None = None
        self.done = False
        self.times: tuple[int, int] | None = None

    # -- while open ----------------------------------------------------------------------------------------

    def write(self, offset: int, data: Buffer) -> int:
        if self.failure:
            return SFTP_FAILURE
        s = self.session
        data = memoryview(data)
        end = offset + len(data)
        if end > s.config.sftp.max_file_bytes:
            return self._fail(
                "size_limit", f"the file is larger than the limit of {s.config.sftp.max_file_bytes} bytes"
            )
        growth = end - self.reserved
        if growth > 0:
            if not s.ledger.reserve(s.account.id, growth, s.config.sftp.quota_bytes):
                return self._fail("quota", f"the account's quota of {s.config.sftp.quota_bytes} bytes is used up")
            self.reserved = end
        try:
            os.pwrite(self.fd, data, offset)
        except OSError as exc:
            return self._fail("write_failed", exc.strerror or str(exc))
        if self.sequential and offset == self.hashed:
            self.sha.update(data)
            self.hashed = end
        else:
            self.sequential = False
        self.size = max(self.size, end)
        return SFTP_OK

    def read(self, offset: int, length: int) -> bytes | int:
        return os.pread(self.fd, length, offset) if self.fd >= 0 else SFTP_EOF

    def stat(self) -> paramiko.SFTPAttributes | int:
        return _file_attrs(os.fstat(self.fd), self.name)

    def chattr(self, attr: paramiko.SFTPAttributes) -> int:
        status = check_attrs(self.session, attr, self.name)
        if status == SFTP_OK and _flags(attr) & attr.FLAG_AMTIME:
            self.times = (attr.st_atime or 0, attr.st_mtime or 0)
        return status

    def fsync(self) -> int:
        os.fsync(self.fd)
        return SFTP_OK

    def _fail(self, reason: str, message: str) -> int:
        self.failure = message
        s = self.session
        log.warning(
            "sftp_upload_refused",
            account=s.account.name,
            address=s.address,
            administration=self.code,
            file=self.name,
            reason=reason,
            detail=message,
        )
        return SFTP_FAILURE

    # -- endings -------------------------------------------------------------------------------------------

    def close(self) -> None:
        """paramiko's own close (never the client's CLOSE, which calls ``commit``): drop the upload."""
        self.abort("closed without the client's close request")

    def commit(self) -> int:
        """The client closed the handle: rename into place (the upload is complete), or drop a failed one."""
        if self.done:
            return SFTP_OK
        if self.failure:
            self._discard()
            return SFTP_FAILURE
        s = self.session
        try:
            digest = self._digest()
            if self.times:
                os.utime(self.fd, self.times)
            s.ledger.uploaded(s.account, self.code, self.name, self.size, digest, s.address)
        except OSError as exc:
            log.error("sftp_upload_failed", account=s.account.name, address=s.address, file=self.name, error=str(exc))
            self._discard()
            return SFTP_FAILURE
        try:
            os.rename(self.temp, self.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        except OSError as exc:
            s.ledger.removed(self.code, self.name)
            log.error("sftp_upload_failed", account=s.account.name, address=s.address, file=self.name, error=str(exc))
            self._discard()
            return SFTP_FAILURE
        self._release()
        log.info(
            "sftp_upload_finished",
            account=s.account.name,
            address=s.address,
            administration=self.code,
            file=self.name,
            size=self.size,
            sha256=digest,
        )
        return SFTP_OK

    def abort(self, reason: str) -> None:
        """The session ended with the handle open: nothing reaches the inbox. The partial file is removed before
        the event is logged, so that the event means it is gone (a test that waited for the event could find it)."""
        if self.done:
            return
        s = self.session
        self._discard()
        log.warning(
            "sftp_upload_aborted",
            account=s.account.name,
            address=s.address,
            administration=self.code,
            file=self.name,
            size=self.size,
            reason=reason,
        )

    def _digest(self) -> str:
        if self.sequential and self.hashed == self.size:
            return self.sha.hexdigest()
        sha = hashlib.sha256()
        offset = 0
        while chunk := os.pread(self.fd, 1 << 20, offset):
            sha.update(chunk)
            offset += len(chunk)
        return sha.hexdigest()

    def _discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.temp, dir_fd=self.dir_fd)
        self._release()

    def _release(self) -> None:
        self.done = True
        self.session.ledger.release(self.session.account.id, self.reserved)
        self.reserved = 0
        for fd in (self.fd, self.dir_fd):
            if fd >= 0:
                os.close(fd)
        self.fd = self.dir_fd = -1


def check_attrs(session: Session, attr: paramiko.SFTPAttributes, path: str) -> int:
    """SETSTAT: times are kept; ownership, special mode bits and truncation are refused; plain modes ignored."""
    if _flags(attr) & attr.FLAG_UIDGID:
        return session.refuse("chown", path, "changing the owner is not allowed")
    if _flags(attr) & attr.FLAG_PERMISSIONS and (attr.st_mode or 0) & SPECIAL_BITS:
        return session.refuse("chmod", path, "setuid, setgid and sticky bits are not allowed")
    if _flags(attr) & attr.FLAG_SIZE:
        return session.refuse("truncate", path, "changing a file's size is not allowed")
    return SFTP_OK


class GatewaySftp(paramiko.SFTPServerInterface):
    """The file operations of one session. ``server`` is the connection's ``ServerInterface`` (see
    ``gateway.sftp_server``) which holds the logged-in ``Session``."""

    def __init__(self, server: Any, *args: Any, **kwargs: Any):
        super().__init__(server, *args, **kwargs)
        self.session: Session = server.session

    # -- helpers -------------------------------------------------------------------------------------------

    def _place(self, path: str) -> Place | None:
        return resolve(path, self.session.codes)

    def _open_folder_fd(self, place: Place) -> int:
        return os.open(self.session.folder(place), DIR_FLAGS)

    def _lstat(self, place: Place) -> os.stat_result:
        fd = self._open_folder_fd(place)
        try:
            return os.stat(place.name or ".", dir_fd=fd, follow_symlinks=False)
        finally:
            os.close(fd)

    # -- SFTPServerInterface -------------------------------------------------------------------------------

    def canonicalize(self, path: str) -> str:
        return normalize(path)

    def list_folder(self, path: str) -> list[paramiko.SFTPAttributes] | int:
        place = self._place(path)
        if place is None or place.name is not None:
            return SFTP_NO_SUCH_FILE
        out = [_dir_attrs(name) for name in folder_entries(place, self.session.codes)]
        if place.area in (Area.ROOT, Area.FEEDBACK_ROOT):
            return out
        try:
            fd = self._open_folder_fd(place)
        except OSError as exc:
            return _status(exc)
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    if entry.name.startswith(INTERNAL_PREFIX):
                        continue
                    try:
                        out.append(_file_attrs(entry.stat(follow_symlinks=False), entry.name))
                    except FileNotFoundError:
                        continue
        finally:
            os.close(fd)
        return out

    def stat(self, path: str) -> paramiko.SFTPAttributes | int:
        place = self._place(path)
        if place is None:
            return SFTP_NO_SUCH_FILE
        if place.name is None:
            return _dir_attrs(normalize(path).rsplit("/", 1)[-1])
        try:
            return _file_attrs(self._lstat(place), place.name)
        except OSError as exc:
            return _status(exc)

    lstat = stat  # nothing is ever followed: stat and lstat both describe the entry itself

    def open(self, path: str, flags: int, attr: paramiko.SFTPAttributes) -> paramiko.SFTPHandle | int:
        place = self._place(path)
        if place is None:
            return (
                self.session.refuse("open", path, "outside the account's folders")
                if flags & os.O_CREAT
                else SFTP_NO_SUCH_FILE
            )
        if place.name is None:
            return self.session.refuse("open", path, "a folder cannot be opened as a file")
        writing = flags & (os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC)
        if writing and not place.writable:
            return self.session.refuse("open", path, "the feedback folder is read-only")
        try:
            fd = self._open_folder_fd(place)
        except OSError as exc:
            return _status(exc)
        if not writing:
            return self._open_read(fd, place)
        try:
            return self._open_upload(fd, place, flags)
        except BaseException:
            os.close(fd)
            raise

    def _open_read(self, dir_fd: int, place: Place) -> paramiko.SFTPHandle | int:
        try:
            fd = os.open(place.name or "", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError as exc:
            return _status(exc)
        finally:
            os.close(dir_fd)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return self.session.refuse("open", place.name or "", "not a regular file")
        return ReadHandle(fd)

    def _open_upload(self, dir_fd: int, place: Place, flags: int) -> paramiko.SFTPHandle | int:
        assert place.name is not None
        try:
            existing: os.stat_result | None = os.stat(place.name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            existing = None
        if existing is not None and flags & os.O_EXCL:
            os.close(dir_fd)
            return SFTP_FAILURE
        if existing is not None and not stat.S_ISREG(existing.st_mode):
            os.close(dir_fd)
            return self.session.refuse("open", place.name, "not a regular file")
        if existing is not None and existing.st_size and not flags & os.O_TRUNC:
            os.close(dir_fd)
            return self.session.refuse("open", place.name, "appending to or resuming an upload is not supported")
        return UploadHandle(self.session, place, dir_fd)

    def remove(self, path: str) -> int:
        place = self._place(path)
        if place is None or place.name is None:
            return SFTP_NO_SUCH_FILE
        if not place.writable:
            return self.session.refuse("remove", path, "the feedback folder is read-only")
        fd = self._open_folder_fd(place)
        try:
            os.unlink(place.name, dir_fd=fd)
            assert place.code is not None
            self.session.ledger.removed(place.code, place.name)
        except OSError as exc:
            return _status(exc)
        finally:
            os.close(fd)
        return SFTP_OK

    def rename(self, oldpath: str, newpath: str) -> int:
        return self._rename(oldpath, newpath, overwrite=False)

    def posix_rename(self, oldpath: str, newpath: str) -> int:
        return self._rename(oldpath, newpath, overwrite=True)

    def _rename(self, oldpath: str, newpath: str, overwrite: bool) -> int:
        src, dst = self._place(oldpath), self._place(newpath)
        if src is None or src.name is None:
            return SFTP_NO_SUCH_FILE
        if dst is None or dst.name is None or not src.writable or not dst.writable:
            return self.session.refuse("rename", f"{oldpath} -> {newpath}", "only files in the upload folders move")
        assert src.code is not None and dst.code is not None
        src_fd, dst_fd = self._open_folder_fd(src), self._open_folder_fd(dst)
        try:
            st = os.stat(src.name, dir_fd=src_fd, follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                return self.session.refuse("rename", oldpath, "not a regular file")
            try:
                os.stat(dst.name, dir_fd=dst_fd, follow_symlinks=False)
                if not overwrite:
                    return SFTP_FAILURE
            except FileNotFoundError:
                pass
            account_id = self.session.account.id
            self.session.ledger.renamed(account_id, (src.code, src.name), (dst.code, dst.name))
            try:
                os.rename(src.name, dst.name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
            except OSError:
                self.session.ledger.renamed(account_id, (dst.code, dst.name), (src.code, src.name))
                raise
        except OSError as exc:
            return _status(exc)
        finally:
            os.close(src_fd)
            os.close(dst_fd)
        log.info(
            "sftp_renamed",
            account=self.session.account.name,
            address=self.session.address,
            old=normalize(oldpath),
            new=normalize(newpath),
        )
        return SFTP_OK

    def mkdir(self, path: str, attr: paramiko.SFTPAttributes) -> int:
        return self.session.refuse("mkdir", path, "folders cannot be created")

    def rmdir(self, path: str) -> int:
        return self.session.refuse("rmdir", path, "folders cannot be removed")

    def chattr(self, path: str, attr: paramiko.SFTPAttributes) -> int:
        place = self._place(path)
        if place is None or place.name is None:
            return SFTP_NO_SUCH_FILE if place is None else self.session.refuse("setstat", path, "folders are fixed")
        if not place.writable:
            return self.session.refuse("setstat", path, "the feedback folder is read-only")
        status = check_attrs(self.session, attr, path)
        if status != SFTP_OK or not _flags(attr) & attr.FLAG_AMTIME:
            return status
        fd = self._open_folder_fd(place)
        try:
            os.utime(place.name, (attr.st_atime or 0, attr.st_mtime or 0), dir_fd=fd, follow_symlinks=False)
        except OSError as exc:
            return _status(exc)
        finally:
            os.close(fd)
        return SFTP_OK

    def symlink(self, target_path: str, path: str) -> int:
        return self.session.refuse("symlink", path, "symbolic links cannot be created")

    def readlink(self, path: str) -> str | int:
        return SFTP_OP_UNSUPPORTED

    def hardlink(self, oldpath: str, newpath: str) -> int:
        return self.session.refuse("hardlink", newpath, "hard links cannot be created")
