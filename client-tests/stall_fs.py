#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
# stall_fs.py — a FUSE file system that passes through to a directory and stops answering while a flag
# file exists, as a hung NFS server does: every call on it (a lookup, stat, readdir, create, read, write)
# waits until the flag is removed. The kernel caches what it has looked up, so a stall is seen for certain
# only by names nothing has looked up yet. Used by client-tests (functions.sh: stallable_fs).
# Usage: stall_fs.py BACKING_DIR FLAG_FILE MOUNTPOINT   (foreground; unmount to stop it)
import errno
import os
import sys
import time

from fusepy import FUSE, FuseOSError, Operations


class StallFs(Operations):
    def __init__(self, root, flag):
        self.root, self.flag = root, flag

    def __call__(self, op, path, *args):
        while os.path.exists(self.flag):
            time.sleep(0.05)
        try:
            return super().__call__(op, self.root + path, *args)
        except OSError as e:
            raise FuseOSError(e.errno or errno.EIO) from None

    def getattr(self, path, fh=None):
        st = os.lstat(path)
        return {k: getattr(st, k) for k in ("st_atime", "st_ctime", "st_mtime", "st_gid", "st_uid", "st_mode",
                                            "st_nlink", "st_size", "st_ino", "st_blocks")}

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(path)

    def mkdir(self, path, mode):
        return os.mkdir(path, mode)

    def rmdir(self, path):
        return os.rmdir(path)

    def unlink(self, path):
        return os.unlink(path)

    def rename(self, old, new):
        return os.rename(old, self.root + new)

    def create(self, path, mode, fi=None):
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)

    def open(self, path, flags):
        return os.open(path, flags & ~(os.O_CREAT | os.O_EXCL))

    def read(self, path, size, offset, fh):
        return os.pread(fh, size, offset)

    def write(self, path, data, offset, fh):
        return os.pwrite(fh, data, offset)

    def truncate(self, path, length, fh=None):
        os.truncate(path, length)

    def fsync(self, path, datasync, fh):
        os.fsync(fh)

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        os.close(fh)

    def statfs(self, path):
        st = os.statvfs(path)
        return {k: getattr(st, k) for k in ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree",
                                            "f_files", "f_flag", "f_frsize", "f_namemax")}


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: stall_fs.py BACKING_DIR FLAG_FILE MOUNTPOINT")
    FUSE(StallFs(os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])), sys.argv[3], foreground=True,
         nothreads=False, allow_other=True)
