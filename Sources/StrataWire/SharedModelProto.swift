import Foundation
import StrataProto
import StrataSupport

extension ExpectedRevision {
    /// The protobuf form (`strata.v1.ExpectedRevision`).
    public var proto: Strata_V1_ExpectedRevision {
        var out = Strata_V1_ExpectedRevision()
        switch self {
        case .any: out.any = Strata_V1_Empty()
        case .noStream: out.noStream = Strata_V1_Empty()
        case .streamExists: out.streamExists = Strata_V1_Empty()
        case .exact(let revision): out.exact = revision
        }
        return out
    }

    /// From the protobuf form; unset means `.any`.
    public init(proto: Strata_V1_ExpectedRevision?) {
        switch proto?.kind {
        case .none, .any: self = .any
        case .noStream: self = .noStream
        case .streamExists: self = .streamExists
        case .exact(let revision): self = .exact(revision)
        }
    }
}

extension ActualRevision {
    /// The protobuf form (`strata.v1.ActualRevision`).
    public var proto: Strata_V1_ActualRevision {
        var out = Strata_V1_ActualRevision()
        switch self {
        case .noStream: out.noStream = Strata_V1_Empty()
        case .deleted(let last): out.deletedLastRevision = last
        case .revision(let revision): out.revision = revision
        }
        return out
    }

    /// From the protobuf form; unset means `.noStream`.
    public init(proto: Strata_V1_ActualRevision) {
        switch proto.kind {
        case .revision(let revision): self = .revision(revision)
        case .deletedLastRevision(let last): self = .deleted(lastRevision: last)
        case .noStream, .none: self = .noStream
        }
    }
}

extension AppendResult {
    /// The protobuf form (`strata.v1.AppendResult`).
    public var proto: Strata_V1_AppendResult {
        var out = Strata_V1_AppendResult()
        out.stream = stream
        out.firstRevision = firstRevision
        out.lastRevision = lastRevision
        out.firstPosition = firstPosition
        out.lastPosition = lastPosition
        out.recordedAt = recordedAt
        out.replayed = replayed
        return out
    }

    /// From the protobuf form.
    public init(_ proto: Strata_V1_AppendResult) {
        self.init(stream: proto.stream, firstRevision: proto.firstRevision, lastRevision: proto.lastRevision,
                  firstPosition: proto.firstPosition, lastPosition: proto.lastPosition, recordedAt: proto.recordedAt,
                  replayed: proto.replayed)
    }
}

extension ProposedEvent {
    /// The protobuf form (`strata.v1.ProposedEvent`).
    public var proto: Strata_V1_ProposedEvent {
        var out = Strata_V1_ProposedEvent()
        out.id = withUnsafeBytes(of: id.uuid) { Data($0) }
        out.type = type
        out.contentType = contentType
        out.data = data
        out.metadata = metadata
        return out
    }
}
