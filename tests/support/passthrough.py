"""A folder served again through FUSE by libfuse 2, in the foreground.

libfuse 2 has no tmpfile operation, so on this mount open(O_TMPFILE) fails with EOPNOTSUPP:
what a landing folder on a filesystem without O_TMPFILE meets. Everything else is passed
through to the source folder, extended attributes excepted (refused, as on many such
filesystems).

Usage: passthrough.py SOURCE MOUNT_POINT
"""

import errno
import os
import sys

from fuse import FUSE, Operations


class Passthrough(Operations):
    def __init__(self, source):
        self.source = source

    def __call__(self, op, path, *args):
        # fusepy answers an OSError with its errno.
        return getattr(self, op)(self.source + path, *args)

    def getattr(self, path, fh=None):
        st = os.lstat(path)
        keys = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_atime", "st_mtime", "st_ctime")
        return {key: getattr(st, key) for key in keys}

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(path)

    def statfs(self, path):
        sv = os.statvfs(path)
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files", "f_flag", "f_frsize", "f_namemax")
        return {key: getattr(sv, key) for key in keys}

    def mkdir(self, path, mode):
        os.mkdir(path, mode)

    def rmdir(self, path):
        os.rmdir(path)

    def unlink(self, path):
        os.unlink(path)

    def rename(self, old, new):
        os.rename(old, self.source + new)

    def link(self, target, source):
        os.link(self.source + source, target)

    def chmod(self, path, mode):
        os.chmod(path, mode)

    def chown(self, path, uid, gid):
        os.chown(path, uid, gid)

    def utimens(self, path, times=None):
        os.utime(path, times)

    def truncate(self, path, length, fh=None):
        os.truncate(path, length)

    def open(self, path, flags):
        return os.open(path, flags)

    def create(self, path, mode, fi=None):
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)

    def read(self, path, size, offset, fh):
        return os.pread(fh, size, offset)

    def write(self, path, data, offset, fh):
        return os.pwrite(fh, data, offset)

    def flush(self, path, fh):
        return 0

    def fsync(self, path, datasync, fh):
        os.fsync(fh)

    def release(self, path, fh):
        os.close(fh)

    def opendir(self, path):
        return 0

    def releasedir(self, path, fh):
        return 0

    def fsyncdir(self, path, datasync, fh):
        return 0

    def access(self, path, amode):
        if not os.access(path, amode):
            raise OSError(errno.EACCES, path)

    def getxattr(self, path, name, position=0):
        raise OSError(errno.ENOTSUP, path)

    def setxattr(self, path, name, value, options, position=0):
        raise OSError(errno.ENOTSUP, path)

    def listxattr(self, path):
        return []


if __name__ == "__main__":
    source, mount_point = sys.argv[1:]
    FUSE(Passthrough(os.path.realpath(source)), mount_point, foreground=True, nothreads=True)
