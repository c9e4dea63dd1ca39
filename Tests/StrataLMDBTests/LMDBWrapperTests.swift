import StrataLMDB
import Foundation
import Testing
import StrataTestSupport

@Suite("LMDB wrapper")
struct LMDBWrapperTests {
    @Test("opening a missing directory fails with LMDB's code and the operation")
    func openFailure() {
        let directory = TemporaryDirectory()
        #expect {
            _ = try Environment(path: directory.sub("missing/deeper"), options: EnvironmentOptions(mapSize: 1 << 20))
        } throws: { error in
            let error = error as? LMDBError
            return error?.code == .noSuchFile && error?.operation.contains("mdb_env_open") == true
        }
    }

    @Test("a write closure commits when it returns and aborts when it throws")
    func commitAndAbort() throws {
        let directory = TemporaryDirectory()
        let env = try Environment(path: directory.path, options: EnvironmentOptions(mapSize: 1 << 20))
        defer { env.close() }
        let db = try env.openDatabase("kv", flags: [.create, .integerKey])
        try env.write { txn in
            try withKey(1) { key in try Array("kept".utf8).withUnsafeBytes { try txn.put(db, key: key, value: $0) } }
        }
        struct Abort: Error {}
        #expect(throws: Abort.self) {
            try env.write { txn in
                try withKey(2) { key in try Array("dropped".utf8).withUnsafeBytes { try txn.put(db, key: key, value: $0) } }
                throw Abort()
            }
        }
        let values: [String] = try env.read { txn in
            try txn.withCursor(db) { cursor in
                var out: [String] = []
                var entry = try cursor.first()
                while let current = entry {
                    out.append(String(decoding: current.value, as: UTF8.self))
                    entry = try cursor.next()
                }
                return out
            }
        }
        #expect(values == ["kept"])
    }

    @Test("cursor seeks find the nearest key in each direction")
    func cursorSeeks() throws {
        let directory = TemporaryDirectory()
        let env = try Environment(path: directory.path, options: EnvironmentOptions(mapSize: 1 << 20))
        defer { env.close() }
        let db = try env.openDatabase("kv", flags: [.create, .integerKey])
        try env.write { txn in
            for key: UInt64 in [10, 20, 30] {
                try withKey(key) { k in try withKey(key) { try txn.put(db, key: k, value: $0, flags: .append) } }
            }
        }
        try env.read { txn in
            try txn.withCursor(db) { cursor in
                let after = try withKey(15) { try cursor.seek(atOrAfter: $0) }
                #expect(after.map { decodeKey($0.key) } == 20)
                let before = try withKey(25) { try cursor.seek(atOrBefore: $0) }
                #expect(before.map { decodeKey($0.key) } == 20)
                let exact = try withKey(30) { try cursor.seek(atOrBefore: $0) }
                #expect(exact.map { decodeKey($0.key) } == 30)
                let beyond = try withKey(99) { try cursor.seek(atOrBefore: $0) }
                #expect(beyond.map { decodeKey($0.key) } == 30)
                let none = try withKey(31) { try cursor.seek(atOrAfter: $0) }
                #expect(none == nil)
            }
        }
    }

    @Test("appending a key out of order is refused rather than misplaced")
    func appendOrder() throws {
        let directory = TemporaryDirectory()
        let env = try Environment(path: directory.path, options: EnvironmentOptions(mapSize: 1 << 20))
        defer { env.close() }
        let db = try env.openDatabase("log", flags: [.create, .integerKey])
        #expect {
            try env.write { txn in
                try withKey(5) { k in try withKey(5) { try txn.put(db, key: k, value: $0, flags: .append) } }
                try withKey(4) { k in try withKey(4) { try txn.put(db, key: k, value: $0, flags: .append) } }
            }
        } throws: { ($0 as? LMDBError)?.code == .keyExists }
    }

    @Test("a full map is reported as map full, and the environment stays readable")
    func mapFull() throws {
        let directory = TemporaryDirectory()
        let env = try Environment(path: directory.path, options: EnvironmentOptions(mapSize: 64 << 10))
        defer { env.close() }
        let db = try env.openDatabase("kv", flags: [.create, .integerKey])
        let big = [UInt8](repeating: 7, count: 4000)
        var stored: UInt64 = 0
        var failure: LMDBError?
        for key in UInt64(0)..<100 {
            do {
                try env.write { txn in
                    try withKey(key) { k in try big.withUnsafeBytes { try txn.put(db, key: k, value: $0) } }
                }
                stored += 1
            } catch let error as LMDBError {
                failure = error
                break
            }
        }
        #expect(failure?.isMapFull == true)
        let count = try env.read { txn in try txn.statistics(db).entries }
        #expect(UInt64(count) == stored)
    }
}

/// An `MDB_INTEGERKEY` key: a native 64-bit integer.
private func withKey<R>(_ value: UInt64, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
    try withUnsafeBytes(of: value, body)
}

private func decodeKey(_ buffer: UnsafeRawBufferPointer) -> UInt64 {
    buffer.loadUnaligned(as: UInt64.self)
}
