import Foundation
import StrataTestSupport
import Testing
@testable import StrataStorage

/// The writer keeps zero-filled space written ahead of the data file's last
/// used page (`DataFilePreallocator`); the file must stay a valid LMDB
/// environment with every event in it.
@Suite("Data file preallocation")
struct PreallocationTests {
    static let mib = 1 << 20

    static func options(step: Int, mapSize: Int = 256 << 20) -> EventStoreOptions {
        var options = TestStore.defaultOptions
        options.preallocationStep = step
        options.mapSize = mapSize
        return options
    }

    static func dataFileSize(_ fixture: TestStore) -> Int {
        StorageEngine.fileSize(fixture.directory.sub("tenant/data.mdb"))
    }

    /// Closes the store (which waits for the writer: it extends after
    /// answering) and reopens it; returns the bytes LMDB uses and the file's size.
    static func reopen(_ fixture: TestStore, options: EventStoreOptions) throws -> (store: EventStore, used: Int, size: Int) {
        let reopened = try fixture.reopen(options: options)
        return (reopened, try reopened.usage().usedBytes, dataFileSize(fixture))
    }

    /// Appends `batches` appends of 100 events of `bytes` each, to 10 streams.
    static func fill(_ store: EventStore, batches: Int, bytes: Int) throws {
        let body = String(repeating: "x", count: bytes)
        for batch in 0..<batches {
            let proposed = (0..<100).map { _ in event("Filled", "{\"b\":\"\(body)\"}") }
            _ = try store.append(to: "s-\(batch % 10)", expected: .any, events: proposed)
        }
    }

    @Test("the file keeps between half a step and a step and a half of headroom; it reopens, verifies and reads back")
    func headroom() throws {
        let step = Self.mib
        let fixture = try TestStore(options: Self.options(step: step))
        try Self.fill(fixture.store, batches: 30, bytes: 1000)  // about 3 MiB: several steps
        let (reopened, used, size) = try Self.reopen(fixture, options: Self.options(step: step))
        defer { reopened.close() }
        #expect(used > 3 * step)
        #expect(size - used >= step / 2)
        #expect(size - used < step + step / 2)
        // A backup copies the data, not the zeros ahead of it.
        let backup = try reopened.backup(to: fixture.directory.sub("backup"), progress: { _ in true })
        #expect(backup.bytes <= UInt64(used))
        #expect(try allEvents(reopened).count == 3000)
        let report = try reopened.verify { _ in true }
        #expect(report.isConsistent)
        #expect(report.eventsChecked == 3000)
        // And appends go on where they stopped.
        let next = try reopened.append(to: "after", expected: .noStream, events: events(1))
        #expect(next.firstPosition == 3001)
    }

    @Test("a commit bigger than the headroom grows the file itself; the next extension starts from the real end")
    func commitPastTheEnd() throws {
        let step = Self.mib
        let fixture = try TestStore(options: Self.options(step: step))
        _ = try fixture.store.append(to: "small", expected: .noStream, events: events(1))
        // One append of about 4 MiB, far past a 1 MiB step.
        let body = String(repeating: "y", count: 40_000)
        let big = (0..<100).map { _ in event("Big", "{\"b\":\"\(body)\"}") }
        _ = try fixture.store.append(to: "big", expected: .noStream, events: big)
        let (reopened, used, size) = try Self.reopen(fixture, options: Self.options(step: step))
        defer { reopened.close() }
        #expect(used > 3 * step)
        #expect(size - used >= step / 2)
        #expect(try reopened.readStream("big").events.map(\.data) == big.map(\.data))
        #expect(try reopened.verify { _ in true }.isConsistent)
    }

    @Test("step 0 turns it off: the file ends near its last used page")
    func off() throws {
        let fixture = try TestStore(options: Self.options(step: 0))
        try Self.fill(fixture.store, batches: 10, bytes: 1000)
        let reopened = try fixture.reopen(options: Self.options(step: 0))
        defer { reopened.close() }
        let used = try reopened.usage().usedBytes
        #expect(Self.dataFileSize(fixture) <= used)
        #expect(try allEvents(reopened).count == 1000)
    }

    @Test("the file never grows past the map size (the tenant's quota)")
    func cappedByMapSize() throws {
        let mapSize = 2 * Self.mib
        let fixture = try TestStore(options: Self.options(step: 16 * Self.mib, mapSize: mapSize))
        _ = try fixture.store.append(to: "a", expected: .noStream, events: events(10))
        let reopened = try fixture.reopen(options: Self.options(step: 16 * Self.mib, mapSize: mapSize))
        defer { reopened.close() }
        #expect(Self.dataFileSize(fixture) == mapSize)
        #expect(try reopened.readStream("a").events.count == 10)
    }

    @Test("a full disk: the zeros written are given back, no retry per commit, and it resumes once the file grew",
          .enabled(if: canMountTmpfs, "needs permission to mount a tmpfs"))
    func fullDisk() throws {
        let disk = try TmpfsMount(size: "3m")
        defer { withExtendedLifetime(disk) {} }
        let path = disk.point + "/data.mdb"
        let used = 256 << 10
        #expect(FileManager.default.createFile(atPath: path, contents: Data(repeating: 1, count: used)))
        let preallocator = try #require(DataFilePreallocator(path: path, step: 4 * Self.mib, limit: 1 << 30))
        defer { preallocator.close() }
        // 4 MiB do not fit in 3: the write fails part way, and what it wrote is truncated away.
        preallocator.ensureHeadroom(usedBytes: used)
        #expect(preallocator.failedWrites == 1)
        #expect(StorageEngine.fileSize(path) == used)
        // No new attempt while the file has not grown (one failed write, not one per commit).
        preallocator.ensureHeadroom(usedBytes: used)
        #expect(preallocator.failedWrites == 1)
        // Room again, and the file grew (as LMDB grows it): it extends again.
        #expect(try disk.remount("size=16m"))
        let handle = try #require(FileHandle(forWritingAtPath: path))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(repeating: 2, count: 4096))
        try handle.close()
        preallocator.ensureHeadroom(usedBytes: used + 4096)
        #expect(preallocator.failedWrites == 1)
        #expect(StorageEngine.fileSize(path) == used + 4096 + 4 * Self.mib)
        // The bytes before the zeros are untouched.
        let contents = try #require(FileManager.default.contents(atPath: path))
        #expect(contents.prefix(used).allSatisfy { $0 == 1 })
        #expect(contents[used ..< used + 4096].allSatisfy { $0 == 2 })
        #expect(contents.suffix(4 * Self.mib).allSatisfy { $0 == 0 })
    }

    @Test("relaxed durability writes no zeros ahead: its commits are not synced one by one")
    func notWithRelaxedDurability() throws {
        var options = Self.options(step: Self.mib)
        options.durability = .relaxed
        let fixture = try TestStore(options: options)
        try Self.fill(fixture.store, batches: 10, bytes: 1000)
        let reopened = try fixture.reopen(options: options)
        defer { reopened.close() }
        let used = try reopened.usage().usedBytes
        #expect(Self.dataFileSize(fixture) <= used)
    }
}
