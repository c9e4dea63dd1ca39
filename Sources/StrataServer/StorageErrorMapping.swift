import Foundation
import StrataProto
import StrataProjections
import StrataStorage
import StrataWire

/// A domain error that knows which status it travels as (grpc-swift-2's
/// `RPCErrorConvertible`): handlers throw their own errors, and
/// `RPCError(any:)` turns them into the call's status.
public protocol RPCErrorConvertible: Error {
    var rpcError: RPCError { get }
}

extension StorageError: RPCErrorConvertible {
    public var rpcError: RPCError { RPCError(self) }
}

extension ProjectionError: RPCErrorConvertible {
    public var rpcError: RPCError {
        switch self {
        case .invalidScript(let message):
            .invalidArgument(field: "script", reason: message, message: message)
        case .runtime, .instructionBudgetExceeded, .memoryLimitExceeded, .invalidOutput:
            RPCError(.failedPrecondition, "the script failed while replaying: \(self)")
        case .storage(let storage):
            RPCError(storage)
        case .sandbox:
            RPCError(.internal, description)
        case .tooManyProjections:
            RPCError(.resourceExhausted, description)
        }
    }
}

extension RPCError {
    /// The status for a storage error (PROTOCOL.md, "Status codes"); the
    /// storage error stays attached as `cause`.
    init(_ error: StorageError) {
        self.init(mapping: error)
        cause = error
    }

    private init(mapping error: StorageError) {
        var detail = Strata_V1_ErrorDetail()
        switch error {
        case let .wrongExpectedRevision(stream, expected, actual):
            var d = Strata_V1_WrongExpectedRevision()
            d.stream = stream
            d.expected = expected.proto
            d.actual = actual.proto
            detail.wrongExpectedRevision = d
            self.init(.failedPrecondition, error.description, detail: detail)
        case .streamNotFound(let stream):
            var d = Strata_V1_StreamNotFound()
            d.stream = stream
            detail.streamNotFound = d
            self.init(.notFound, error.description, detail: detail)
        case .streamDeleted(let stream):
            var d = Strata_V1_StreamDeleted()
            d.stream = stream
            detail.streamDeleted = d
            self.init(.notFound, error.description, detail: detail)
        case let .invalidStreamName(stream, reason):
            self = .invalidArgument(field: "stream", reason: "'\(stream)': \(reason)", message: error.description)
        case let .invalidSnapshot(_, reason):
            self = .invalidArgument(field: "snapshot", reason: reason, message: error.description)
        case let .invalidEvent(_, index, reason):
            self = .invalidArgument(field: "events[\(index)]", reason: reason, message: error.description)
        case let .eventTooLarge(_, index, size, limit):
            self = .invalidArgument(field: "events[\(index)]", reason: "\(size) bytes; the limit is \(limit)", message: error.description)
        case .noEvents:
            self = .invalidArgument(field: "events", reason: "an append needs at least one event", message: error.description)
        case let .tooManyEvents(count, limit):
            self = .invalidArgument(field: "events", reason: "\(count) events; the limit is \(limit)", message: error.description)
        case .duplicateEventID(let id):
            self = .invalidArgument(field: "events", reason: "event id \(id) appears twice", message: error.description)
        case .duplicateStream(let stream):
            self = .invalidArgument(field: "writes", reason: "stream '\(stream)' appears twice", message: error.description)
        case let .eventIDConflict(id, stream, revision), let .eventIDContentConflict(id, stream, revision):
            var d = Strata_V1_EventIdConflict()
            d.eventID = id.uuidString.lowercased()
            d.storedStream = stream
            d.storedRevision = revision
            detail.eventIDConflict = d
            self.init(.alreadyExists, error.description, detail: detail)
        case let .quotaExceeded(_, mapSize):
            var d = Strata_V1_QuotaExceeded()
            d.limit = "tenant-map-size"
            d.value = UInt64(mapSize)
            detail.quotaExceeded = d
            self.init(.resourceExhausted, error.description, detail: detail)
        case .diskFull:
            var d = Strata_V1_QuotaExceeded()
            d.limit = "disk-space"
            detail.quotaExceeded = d
            self.init(.resourceExhausted, error.description, detail: detail)
        case .invalidTenantName:
            self = .invalidArgument(field: "metadata.tenant", reason: error.description, message: error.description)
        case .tenantNotFound:
            self.init(.notFound, error.description)
        case .tenantExists:
            self.init(.alreadyExists, error.description)
        case .closed:
            self.init(.unavailable, error.description)
        case .newerSchema, .corrupt:
            self.init(.dataLoss, error.description)
        case .lmdb:
            self.init(.internal, error.description)
        case .projectionNotFound:
            self.init(.notFound, error.description)
        case .projectionExists:
            self.init(.alreadyExists, error.description)
        case let .invalidProjection(_, reason):
            self = .invalidArgument(field: "name", reason: reason, message: error.description)
        case .projectionConflict:
            self.init(.aborted, error.description)
        case .keyNotFound:
            self.init(.notFound, error.description)
        case .keyExists:
            self.init(.alreadyExists, error.description)
        case .tenantBusy:
            self.init(.unavailable, error.description)
        case .fileOperation, .invariantViolated:
            self.init(.internal, error.description)
        case .backupExists:
            self.init(.alreadyExists, error.description)
        case .backupNotFound:
            self.init(.notFound, error.description)
        }
    }

    /// Any error from a handler: RPC errors pass, domain errors that know
    /// their status (`RPCErrorConvertible`) convert, anything else is
    /// INTERNAL. The original error stays attached as `cause` (for logs).
    public init(any error: any Error) {
        switch error {
        case let error as RPCError: self = error
        case let error as any RPCErrorConvertible:
            self = error.rpcError
            cause = error
        default:
            self.init(.internal, "\(error)")
            cause = error
        }
    }

    static func invalidArgument(field: String, reason: String, message: String? = nil) -> RPCError {
        var d = Strata_V1_InvalidArgument()
        d.field = field
        d.reason = reason
        var detail = Strata_V1_ErrorDetail()
        detail.invalidArgument = d
        return RPCError(.invalidArgument, message ?? "\(field): \(reason)", detail: detail)
    }
}
