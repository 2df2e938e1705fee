#!/usr/bin/env python3
"""A case-insensitive passthrough file system, like vfat or a casefolded ext4, for the tests.

    python3 casefold_fs.py BACKING MOUNTPOINT    (CASEFOLD_FS_DEBUG=1: libfuse's -d on stderr)

Mounts BACKING (a folder) on MOUNTPOINT with FUSE (fusepy, on libfuse2) in the foreground and
returns once it is unmounted (umount, fusermount -u) or sent SIGTERM/SIGINT (libfuse unmounts).
Each path component is looked up in its backing folder by NFC + Unicode case folding
(unicodedata.normalize('NFC', name).casefold()): "README.txt" opens "Readme.txt" and
"STRASSE.txt" opens "Straße.txt"; a new name keeps the case it was created with, and creating
a name that folds to an existing entry uses that entry (EEXIST under O_EXCL and for mkdir).
Like vfat there are no hard links (link: EPERM), and like every libfuse2 file system no
renameat2 flags (the kernel answers RENAME_NOREPLACE with EINVAL). Inode numbers are the
backing ones (use_ino), and nothing is cached (timeouts 0), so that two spellings of one name
stat as the same file. Single-threaded; for tests, not speed.
"""
import errno
import os
import sys
import time
import unicodedata

try:
    from fusepy import FUSE, FuseOSError, Operations  # the Debian package python3-fusepy
except ImportError:
    from fuse import FUSE, FuseOSError, Operations  # pip's fusepy

UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2


def fold(name):
    return unicodedata.normalize("NFC", name).casefold()


class CaseFold(Operations):
    use_ns = True  # times in nanoseconds
    # Without it libfuse2 drops a utimens that leaves one of the times as it is (UTIME_OMIT:
    # futimens of the mtime alone), and still answers success.
    flag_utime_omit_ok = 1

    def __init__(self, root):
        self.root = os.path.realpath(root)

    def real(self, path):
        """The backing path: each component as it is spelled in its folder, if it exists."""
        cur = self.root
        for part in path.split("/"):
            if not part:
                continue
            name = part
            if not os.path.lexists(os.path.join(cur, part)):
                want = fold(part)
                try:
                    name = next((n for n in os.listdir(cur) if fold(n) == want), part)
                except OSError:  # not a folder (yet): the lookup below says so
                    pass
            cur = os.path.join(cur, name)
        return cur

    # --- names ---------------------------------------------------------------------------------
    def getattr(self, path, fh=None):
        st = os.fstat(fh) if path is None else os.lstat(self.real(path))
        keys = ("st_mode", "st_ino", "st_nlink", "st_uid", "st_gid", "st_size", "st_blocks",
                "st_blksize", "st_atime_ns", "st_mtime_ns", "st_ctime_ns")
        return {k.replace("_ns", ""): getattr(st, k) for k in keys}

    def access(self, path, amode):
        if not os.access(self.real(path), amode):
            raise FuseOSError(errno.EACCES)

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self.real(path))

    def mkdir(self, path, mode):
        os.mkdir(self.real(path), mode)

    def rmdir(self, path):
        os.rmdir(self.real(path))

    def unlink(self, path):
        os.unlink(self.real(path))

    def rename(self, old, new):
        src, dst = self.real(old), self.real(new)
        if src == dst:  # "a" to "A": the same entry, a new spelling
            dst = os.path.join(os.path.dirname(src), os.path.basename(new))
        os.rename(src, dst)

    def link(self, target, source):
        raise FuseOSError(errno.EPERM)  # as vfat

    def chmod(self, path, mode):
        os.chmod(self.real(path), mode)

    def utimens(self, path, times=None):
        p = self.real(path)
        if times is None:
            return os.utime(p)
        st, now = os.lstat(p), time.time_ns()
        ns = [now if n == UTIME_NOW else old if n == UTIME_OMIT else s * 10**9 + n
              for (s, n), old in zip(times, (st.st_atime_ns, st.st_mtime_ns))]
        os.utime(p, ns=tuple(ns))

    def statfs(self, path):
        sv = os.statvfs(self.real(path))
        return {k: getattr(sv, k) for k in ("f_bavail", "f_bfree", "f_blocks", "f_bsize",
                                            "f_favail", "f_ffree", "f_files", "f_flag",
                                            "f_frsize", "f_namemax")}

    # --- open files ----------------------------------------------------------------------------
    def create(self, path, mode, fi=None):
        return os.open(self.real(path), os.O_RDWR | os.O_CREAT, mode)

    def open(self, path, flags):
        return os.open(self.real(path), flags & ~(os.O_CREAT | os.O_EXCL))

    def read(self, path, size, offset, fh):
        return os.pread(fh, size, offset)

    def write(self, path, data, offset, fh):
        return os.pwrite(fh, data, offset)

    def truncate(self, path, length, fh=None):
        if fh is not None:
            os.ftruncate(fh, length)
        else:
            os.truncate(self.real(path), length)

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        os.close(fh)

    def fsync(self, path, datasync, fh):
        (os.fdatasync if datasync else os.fsync)(fh)


class Fuse(FUSE):
    """fusepy adds UTIME_NOW and UTIME_OMIT into the nanoseconds: hand them over as they are."""

    def utimens(self, path, buf):
        times = None
        if buf:
            times = [(t.tv_sec, t.tv_nsec) for t in (buf.contents.actime, buf.contents.modtime)]
        return self.operations("utimens", path.decode(self.encoding), times)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: casefold_fs.py BACKING MOUNTPOINT")
    Fuse(CaseFold(sys.argv[1]), sys.argv[2], nothreads=True, foreground=True, fsname="casefold",
         use_ino=True, hard_remove=True, big_writes=True, attr_timeout=0, entry_timeout=0,
         negative_timeout=0, debug=os.environ.get("CASEFOLD_FS_DEBUG") == "1")
