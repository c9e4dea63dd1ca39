import Foundation
import StrataSupport

/// An exclusive lock on a data directory (`<data>/strata.lock`, flock), held
/// for the life of the process: two servers on one data directory would
/// each believe they are the only writer of the system store and of every
/// tenant's index state.
///
/// Thread-safe: the descriptor is owned by a `Locked`; `release()` and
/// `deinit` close it once.
public final class DataDirectoryLock: Sendable {
    public let path: String
    /// The locked file's descriptor; -1 once released.
    private let fd: Locked<Int32>

    public enum Failure: Error, CustomStringConvertible {
        case inUse(directory: String, holder: String)
        case cannotLock(path: String, reason: String)

        public var description: String {
            switch self {
            case let .inUse(directory, holder):
                "data directory \(directory) is in use by another strata process\(holder.isEmpty ? "" : " (pid \(holder))"); stop it or choose another --data"
            case let .cannotLock(path, reason): "cannot lock \(path): \(reason)"
            }
        }
    }

    /// Creates the directory if needed and takes the lock without waiting.
    public init(dataDirectory: String) throws(Failure) {
        path = (dataDirectory as NSString).appendingPathComponent("strata.lock")
        do {
            try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
        } catch {
            throw .cannotLock(path: path, reason: "cannot create \(dataDirectory): \(error.localizedDescription)")
        }
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .cannotLock(path: path, reason: String(cString: strerror(errno))) }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let code = errno
            var buffer = [UInt8](repeating: 0, count: 32)
            let count = read(fd, &buffer, buffer.count)
            close(fd)
            if code == EWOULDBLOCK {
                let holder = count > 0 ? String(decoding: buffer[0 ..< count], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : ""
                throw .inUse(directory: dataDirectory, holder: holder)
            }
            throw .cannotLock(path: path, reason: String(cString: strerror(code)))
        }
        // Who holds it, for the next one's message.
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        self.fd = Locked(fd)
    }

    /// Releases the lock now (idempotent); another process may then take it.
    public func release() {
        fd.withLock { fd in
            if fd >= 0 { close(fd) }
            fd = -1
        }
    }

    deinit { release() }
}
