import StrataSupport
/// Validation limits for appends. All configurable; the defaults are the
/// documented ones.
public struct StoreLimits: Sendable, Hashable {
    /// Data plus metadata bytes of one event.
    public var maxEventBytes: Int = 1 << 20
    /// Events in one append call (all streams of a multi-stream append together).
    public var maxEventsPerAppend: Int = 10_000
    /// UTF-8 bytes of a stream name.
    public var maxStreamNameBytes: Int = 256
    /// UTF-8 bytes of an event type.
    public var maxEventTypeBytes: Int = 256
    /// UTF-8 bytes of a content type.
    public var maxContentTypeBytes: Int = 128
    /// Payload bytes of one snapshot.
    public var maxSnapshotBytes: Int = 1 << 20

    public init() {}
}

extension StoreLimits {
    /// Checks a stream name an application may write to. Names starting with
    /// `$` are reserved for the server (`$all`, future system streams).
    func validateStreamName(_ name: String) throws(StorageError) {
        let count = name.utf8.count
        if count == 0 { throw .invalidStreamName(stream: name, reason: "empty") }
        if count > maxStreamNameBytes {
            throw .invalidStreamName(stream: name, reason: "\(count) bytes; the limit is \(maxStreamNameBytes)")
        }
        if name.hasPrefix("$") { throw .invalidStreamName(stream: name, reason: "names starting with '$' are reserved") }
        if name.utf8.contains(0) { throw .invalidStreamName(stream: name, reason: "contains a NUL byte") }
    }

    /// Checks one proposed event.
    func validate(_ event: ProposedEvent, index: Int, stream: String) throws(StorageError) {
        let typeCount = event.type.utf8.count
        if typeCount == 0 { throw .invalidEvent(stream: stream, index: index, reason: "empty event type") }
        if typeCount > maxEventTypeBytes {
            throw .invalidEvent(stream: stream, index: index,
                                reason: "event type is \(typeCount) bytes; the limit is \(maxEventTypeBytes)")
        }
        if event.contentType.utf8.count > maxContentTypeBytes {
            throw .invalidEvent(stream: stream, index: index,
                                reason: "content type is \(event.contentType.utf8.count) bytes; the limit is \(maxContentTypeBytes)")
        }
        let size = event.data.count + event.metadata.count
        if size > maxEventBytes { throw .eventTooLarge(stream: stream, index: index, size: size, limit: maxEventBytes) }
    }
}
