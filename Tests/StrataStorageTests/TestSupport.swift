import Foundation
@testable import StrataStorage
import StrataTestSupport
import StrataSupport

/// An open store in its own directory; closes and removes everything on deinit.
final class TestStore: Sendable {
    let directory = TemporaryDirectory()
    let store: EventStore

    init(options: EventStoreOptions = TestStore.defaultOptions) throws {
        store = try EventStore(path: directory.sub("tenant"), tenant: "test", options: options)
    }

    static var defaultOptions: EventStoreOptions {
        var options = EventStoreOptions()
        options.mapSize = 256 << 20
        return options
    }

    /// Reopens the same directory (after closing this store).
    func reopen(options: EventStoreOptions = TestStore.defaultOptions) throws -> EventStore {
        store.close()
        return try EventStore(path: directory.sub("tenant"), tenant: "test", options: options)
    }

    deinit { store.close() }
}

func event(_ type: String = "Happened", _ body: String = "{}", id: UUID = UUID.timeOrdered()) -> ProposedEvent {
    ProposedEvent(id: id, type: type, data: Data(body.utf8))
}

func events(_ count: Int, type: String = "Happened") -> [ProposedEvent] {
    (0..<count).map { event(type, "{\"n\":\($0)}") }
}

/// Every event in `$all`, in order.
func allEvents(_ store: EventStore) throws -> [RecordedEvent] {
    var result: [RecordedEvent] = []
    var next: UInt64? = 1
    while let position = next {
        let slice = try store.readAll(from: .position(position), maxCount: 500)
        result += slice.events
        next = slice.nextPosition
    }
    return result
}
