import Glibc
import StrataLMDB

/// Free space on the file system holding a path, for telling a full disk
/// from other write failures: LMDB reports a short page write (what a
/// nearly full file system gives) as EIO, not ENOSPC.
enum DiskSpace {
    /// Below this many free bytes, a failed write is taken for a full disk.
    static let fullBelowBytes: UInt64 = 1 << 20

    /// Bytes an unprivileged writer could still use there, or nil if the
    /// file system cannot be asked.
    static func availableBytes(at path: String) -> UInt64? {
        var info = statvfs()
        guard statvfs(path, &info) == 0 else { return nil }
        return UInt64(info.f_bavail) * UInt64(info.f_frsize)
    }

    /// Whether a write that failed with `code` failed for want of space.
    static func isFull(after code: LMDBError.Code, at path: String) -> Bool {
        if code == .noSpace || code == .diskQuotaExceeded { return true }
        guard code == .ioError, let free = availableBytes(at: path) else { return false }
        return free < fullBelowBytes
    }
}
