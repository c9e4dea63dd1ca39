import Foundation

/// An event as the application proposes it, before the store assigns its
/// revision, position and time: what the client sends, the server decodes
/// and storage appends.
public struct ProposedEvent: Sendable, Hashable {
    /// Unique within the tenant; re-sending the same id makes an append idempotent.
    public var id: UUID
    public var type: String
    public var contentType: String
    public var data: Data
    public var metadata: Data

    public init(id: UUID = UUID.timeOrdered(), type: String, contentType: String = "application/json",
                data: Data, metadata: Data = Data()) {
        self.id = id
        self.type = type
        self.contentType = contentType
        self.data = data
        self.metadata = metadata
    }
}
