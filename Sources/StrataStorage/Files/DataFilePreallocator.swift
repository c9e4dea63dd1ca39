import Glibc

/// Keeps zero-filled space written ahead of the last used page of an LMDB
/// data file, so that commits overwrite blocks the file already has instead
/// of growing it.
///
/// Why: an append-only store grows its file on nearly every commit. A write
/// past the end changes the file's size and allocates blocks, so the commit's
/// `fdatasync` must also write the inode (on ext4 without a journal: one more
/// synchronous write; with a journal: a journal commit) before it returns.
/// Overwriting blocks that were already allocated and written changes no
/// metadata that `fdatasync` must persist. Measured (docs/benchmarks.md): on
/// ext4 with a journal, single appends at 64 callers 25,000 → 32,000/s; on
/// ext4 without one, commits 5–15 % shorter but 100-event batches about 8 %
/// slower (each page is written twice: zeros, then data).
///
/// The zeros are written, not `fallocate`d: an allocated but unwritten extent
/// must be converted on its first write, which is again metadata to sync.
///
/// Safety: this only ever writes at or beyond the file's current end, which
/// holds nothing LMDB has written, and it runs on the tenant's writer thread
/// between write transactions, so LMDB cannot write there meanwhile. LMDB
/// never reads a page above its last used page, and pages between the file's
/// end and that page (never written by LMDB) are free pages it writes before
/// it reads them. LMDB does not use the file's size: `mdb_env_copy` copies
/// only the used pages, and a file longer than its data opens normally.
///
/// If a write fails (a full disk, typically), the zeros written are given
/// back (`ftruncate` to the end before them) and it stops trying until LMDB
/// has grown the file itself; commits go on as without it.
///
/// With `.relaxed` durability commits are not synced one by one, so there is
/// nothing to gain; the writer then does not use it.
///
/// Ownership: the writer thread alone (no lock).
final class DataFilePreallocator {
    /// Bytes written ahead at a time; a new step starts once less than half
    /// a step of headroom is left.
    let step: Int
    /// Never extends the file past this (the map size: LMDB cannot use more).
    let limit: Int
    /// Closed by `close()` when the writer stops (-1 after).
    private var fd: Int32
    /// Where the file ends, as last written or seen.
    private var fileEnd: Int
    /// After a failed write (a full disk, typically), no new attempt until
    /// LMDB has grown the file past this itself, so a full disk costs one
    /// failed write, not one per commit.
    private var pausedUntilFileEnd: Int?
    /// Writes that failed, for tests and diagnostics.
    private(set) var failedWrites = 0

    /// Opens `path` for writing, or returns nil if it cannot be opened (the
    /// store then runs without preallocation) or `step` is not positive.
    init?(path: String, step: Int, limit: Int) {
        guard step > 0 else { return nil }
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        self.fd = fd
        self.step = step
        self.limit = limit
        self.fileEnd = Self.size(of: fd) ?? 0
    }

    deinit {
        close()
    }

    /// Closes the file; later calls to `ensureHeadroom` do nothing. The
    /// writer calls it when it stops, so a store that is closed but still
    /// referenced does not keep a replaced or removed data file alive.
    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    /// Makes sure at least half a step of written space lies beyond
    /// `usedBytes` (the end of LMDB's last used page), writing one step of
    /// zeros when there is less. Cheap when there is enough: one comparison.
    func ensureHeadroom(usedBytes: Int) {
        if fileEnd - usedBytes >= step / 2 || fd < 0 { return }
        // LMDB may have grown the file itself since (a commit larger than
        // the headroom); never write below the real end.
        guard let actualEnd = Self.size(of: fd) else { return }
        fileEnd = max(fileEnd, actualEnd)
        if let pausedUntilFileEnd {
            guard fileEnd > pausedUntilFileEnd else { return }
            self.pausedUntilFileEnd = nil
        }
        if fileEnd - usedBytes >= step / 2 { return }
        let target = min(max(fileEnd, usedBytes) + step, limit)
        guard target > fileEnd else { return }
        let start = fileEnd
        if !writeZeros(from: start, to: target) {
            // Give back what was written: on a nearly full file system the
            // zeros would otherwise take the last free space from every other
            // tenant at once. (At or past the real end, between transactions:
            // nothing of LMDB's is there.)
            _ = ftruncate(fd, off_t(start))
            fileEnd = Self.size(of: fd) ?? start
            failedWrites += 1
            pausedUntilFileEnd = fileEnd
        }
    }

    /// Writes zeros over `[start, end)`; false if any write fails. Left to the
    /// next commit's `fdatasync` to reach the disk (with the new size, once).
    private func writeZeros(from start: Int, to end: Int) -> Bool {
        var offset = start
        while offset < end {
            let count = min(end - offset, Self.zeros.count)
            let written = Self.zeros.withUnsafeBytes { pwrite(fd, $0.baseAddress, count, off_t(offset)) }
            if written < 0 {
                if errno == EINTR { continue }
                return false
            }
            if written == 0 { return false }
            offset += written
            fileEnd = offset
        }
        return true
    }

    private static func size(of fd: Int32) -> Int? {
        var info = stat()
        guard fstat(fd, &info) == 0 else { return nil }
        return Int(info.st_size)
    }

    /// One zero-filled buffer shared by every tenant's writer (read only).
    private static let zeros = [UInt8](repeating: 0, count: 1 << 20)
}
