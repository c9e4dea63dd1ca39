import CLMDB
import Foundation
import StrataSupport

/// Options for opening an LMDB environment.
public struct EnvironmentOptions: Sendable {
    /// The map size in bytes: the most data the environment can hold.
    public var mapSize: Int
    /// The most named databases the environment can open.
    public var maxDatabases: UInt32
    /// The most concurrent read transactions.
    public var maxReaders: UInt32
    /// Whether a commit fsyncs before it returns (LMDB's default). False
    /// opens with `MDB_NOSYNC`: commits reach the page cache only, and the
    /// owner calls `sync()` to flush them.
    public var syncsCommits: Bool

    public init(mapSize: Int, maxDatabases: UInt32 = 16, maxReaders: UInt32 = 256, syncsCommits: Bool = true) {
        self.mapSize = mapSize
        self.maxDatabases = maxDatabases
        self.maxReaders = maxReaders
        self.syncsCommits = syncsCommits
    }
}

/// One LMDB environment (a directory holding `data.mdb` and `lock.mdb`).
///
/// `@unchecked Sendable`: the `MDB_env` pointer is set once in `init` and LMDB's
/// environment functions are thread-safe. The environment is opened with
/// `MDB_NOTLS`, so a read transaction is not tied to the thread that began it
/// (Dispatch hops threads); each transaction is still used by one thread at a
/// time because it only exists inside a synchronous closure. The owner must
/// not call `close()` while a transaction is running; `EventStore` guarantees
/// that through its tenant lease.
public final class Environment: @unchecked Sendable {
    let handle: OpaquePointer
    public let path: String
    public let options: EnvironmentOptions
    /// Whether `mdb_env_close` ran; owned by its lock.
    private let closed = Locked(false)

    /// Opens (creating if needed) the environment in directory `path`.
    public init(path: String, options: EnvironmentOptions) throws(LMDBError) {
        var env: OpaquePointer?
        try lmdbCheck(mdb_env_create(&env), "mdb_env_create")
        guard let env else { throw LMDBError(.outOfMemory, operation: "mdb_env_create") }
        do {
            try lmdbCheck(mdb_env_set_mapsize(env, options.mapSize), "mdb_env_set_mapsize")
            try lmdbCheck(mdb_env_set_maxdbs(env, MDB_dbi(options.maxDatabases)), "mdb_env_set_maxdbs")
            try lmdbCheck(mdb_env_set_maxreaders(env, options.maxReaders), "mdb_env_set_maxreaders")
            var flags = UInt32(MDB_NOTLS)
            if !options.syncsCommits { flags |= UInt32(MDB_NOSYNC) }
            try lmdbCheck(mdb_env_open(env, path, flags, 0o640), "mdb_env_open(\(path))")
            try Self.checkNotTruncated(env, path: path)
        } catch {
            // Unlike some wrappers, never leak the handle when open fails.
            mdb_env_close(env)
            throw error
        }
        self.handle = env
        self.path = path
        self.options = options
    }

    deinit {
        close()
    }

    /// LMDB reads pages through the memory map: a data file cut short (a
    /// full disk during a copy, a bad restore, a damaged file system) would
    /// raise SIGBUS on the first read of a missing page and take the whole
    /// process down. Refused here instead, as corrupt data.
    ///
    /// A healthy file may legitimately end a little before its last page:
    /// LMDB never writes pages that were allocated and freed again in the
    /// same transaction ("loose" pages), and those can be the highest ones.
    /// So only a file more than `truncationTolerancePages` short is refused;
    /// a smaller cut is not caught here (docs/reliability.md).
    private static func checkNotTruncated(_ env: OpaquePointer, path: String) throws(LMDBError) {
        var info = MDB_envinfo()
        var pageStats = MDB_stat()
        guard mdb_env_info(env, &info) == 0, mdb_env_stat(env, &pageStats) == 0 else { return }
        let pageSize = Int(pageStats.ms_psize)
        let needed = (Int(info.me_last_pgno) + 1) * pageSize
        let file = (path as NSString).appendingPathComponent("data.mdb")
        guard let size = (try? FileManager.default.attributesOfItem(atPath: file))?[.size] as? Int else { return }
        if needed - size > truncationTolerancePages * pageSize {
            throw LMDBError(.corrupted,
                            operation: "\(file) is truncated: \(size) bytes, but its last used page ends at byte \(needed)")
        }
    }

    /// How many trailing pages a data file may lack and still be opened.
    static let truncationTolerancePages = 64

    /// Closes the environment. Idempotent. No transaction may be running.
    public func close() {
        closed.withLock { closed in
            if !closed {
                closed = true
                mdb_env_close(handle)
            }
        }
    }

    /// Runs `body` in a read-only transaction, which is always ended (LMDB read
    /// transactions have nothing to commit). Values borrowed from the map are
    /// valid only inside `body`.
    @available(*, noasync, message: "an LMDB transaction must not cross an await")
    public func read<R>(_ body: (borrowing ReadTransaction) throws -> R) throws -> R {
        var txn: OpaquePointer?
        try lmdbCheck(mdb_txn_begin(handle, nil, UInt32(MDB_RDONLY), &txn), "mdb_txn_begin(read)")
        guard let txn else { throw LMDBError(.invalidArgument, operation: "mdb_txn_begin(read)") }
        let transaction = ReadTransaction(handle: TransactionHandle(pointer: txn))
        defer { mdb_txn_abort(txn) }
        return try body(transaction)
    }

    /// Runs `body` in a write transaction: commits when it returns, aborts when
    /// it throws (and rethrows). LMDB allows one write transaction at a time;
    /// it belongs to the calling thread from begin to commit.
    @available(*, noasync, message: "an LMDB transaction must not cross an await")
    public func write<R>(_ body: (borrowing WriteTransaction) throws -> R) throws -> R {
        var txn: OpaquePointer?
        try lmdbCheck(mdb_txn_begin(handle, nil, 0, &txn), "mdb_txn_begin(write)")
        guard let txn else { throw LMDBError(.invalidArgument, operation: "mdb_txn_begin(write)") }
        let result: R
        do {
            result = try body(WriteTransaction(handle: TransactionHandle(pointer: txn)))
        } catch {
            mdb_txn_abort(txn)
            throw error
        }
        // mdb_txn_commit frees the transaction even when it fails.
        try lmdbCheck(mdb_txn_commit(txn), "mdb_txn_commit")
        return result
    }

    /// Opens (or creates) a named database. Runs its own write transaction, so
    /// call it before concurrent work starts. Handles stay valid until the
    /// environment closes (never call `mdb_dbi_close`).
    @available(*, noasync)
    public func openDatabase(_ name: String, flags: DatabaseFlags = []) throws -> Database {
        try write { txn in try txn.openDatabase(name, flags: flags) }
    }

    /// Flushes buffered commits to disk (needed when commits are not synced).
    public func sync(force: Bool = true) throws(LMDBError) {
        try lmdbCheck(mdb_env_sync(handle, force ? 1 : 0), "mdb_env_sync")
    }

    /// Clears reader slots left by dead processes or threads; returns how many
    /// were cleared. Stale readers pin old pages and make the file grow.
    @discardableResult
    public func checkReaders() -> Int32 {
        var dead: Int32 = 0
        mdb_reader_check(handle, &dead)
        return dead
    }

    /// Map size and the bytes up to the highest page used, for usage reporting.
    public func usage() -> (mapSize: Int, usedBytes: Int) {
        var info = MDB_envinfo()
        mdb_env_info(handle, &info)
        var pageStats = MDB_stat()
        mdb_env_stat(handle, &pageStats)
        return (info.me_mapsize, (info.me_last_pgno + 1) * Int(pageStats.ms_psize))
    }

}

extension Environment {
    /// Writes a consistent copy of the environment to the file `path`
    /// (created; it must not exist) and fsyncs it. LMDB writes the copy into
    /// a pipe from a thread of its own, inside one read transaction, so
    /// writers go on meanwhile; this thread moves the bytes to the file and
    /// reports `progress(bytesWritten)` after each chunk. `progress`
    /// returning false cancels: the partial file is removed and
    /// `CancellationError` is thrown.
    public func copy(toFile path: String, compact: Bool, progress: (Int) -> Bool) throws {
        // A closed read end turns LMDB's write into EPIPE instead of a signal.
        signal(SIGPIPE, SIG_IGN)
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw LMDBError(errno: errno, operation: "pipe") }
        let (readFD, writeFD) = (fds[0], fds[1])
        let out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o640)
        if out < 0 {
            let code = errno
            Glibc.close(readFD)
            Glibc.close(writeFD)
            throw LMDBError(errno: code, operation: "create \(path)")
        }
        let handle = self.handle
        let copyResult = Locked<Int32?>(nil)
        let copyDone = DispatchSemaphore(value: 0)
        let flags = compact ? UInt32(MDB_CP_COMPACT) : 0
        // `handle` is an OpaquePointer LMDB lets any thread use; the copy
        // thread touches nothing else.
        nonisolated(unsafe) let envHandle = handle
        Thread.detachNewThread {
            let rc = mdb_env_copyfd2(envHandle, writeFD, flags)
            Glibc.close(writeFD)
            copyResult.withLock { $0 = rc }
            copyDone.signal()
        }
        var failure: (any Error)?
        var written = 0
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        reading: while true {
            let count = Glibc.read(readFD, buffer.baseAddress, buffer.count)
            if count < 0 {
                if errno == EINTR { continue }
                failure = LMDBError(errno: errno, operation: "read the copy pipe")
                break
            }
            if count == 0 { break }
            var offset = 0
            while offset < count {
                let n = Glibc.write(out, buffer.baseAddress! + offset, count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = LMDBError(errno: errno, operation: "write \(path)")
                    break reading
                }
                offset += n
            }
            written += count
            if !progress(written) {
                failure = CancellationError()
                break
            }
        }
        // Closing the read end makes a copy still writing fail with EPIPE.
        Glibc.close(readFD)
        copyDone.wait()
        let rc = copyResult.withLock { $0 } ?? EIO  // no result is no copy
        if failure == nil, rc != MDB_SUCCESS {
            failure = LMDBError(LMDBError.Code(rawValue: rc), operation: "mdb_env_copyfd2")
        }
        if failure == nil, fsync(out) != 0 {
            failure = LMDBError(errno: errno, operation: "fsync \(path)")
        }
        Glibc.close(out)
        if let failure {
            unlink(path)
            throw failure
        }
    }
}
