import Foundation
import StrataClient

/// `--json` output: one JSON object per line, keys sorted, built from
/// `Encodable` values so every command's shape is declared in one place.
func printJSON(_ value: some Encodable) {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    do {
        print(String(decoding: try encoder.encode(value), as: UTF8.self))
    } catch {
        // Only a non-finite Double can fail here; say so rather than print nothing.
        FileHandle.standardError.write(Data("strata: cannot encode the JSON output: \(error)\n".utf8))
    }
}

/// One event (`read`, `subscribe`, `at`, `between`).
struct EventOutput: Encodable {
    let stream: String
    let revision: UInt64
    let position: UInt64
    let type: String
    let id: String
    let recordedAt: Int64
    let data: String

    init(_ event: StrataClient.RecordedEvent) {
        stream = event.stream
        revision = event.revision
        position = event.position
        type = event.type
        id = event.id.uuidString.lowercased()
        recordedAt = event.recordedAt
        data = String(decoding: event.data, as: UTF8.self)
    }
}

/// `append`.
struct AppendOutput: Encodable {
    let stream: String
    let revision: UInt64
    let position: UInt64
    let recordedAt: Int64
    let replayed: Bool
}

/// `info`.
struct StreamInfoOutput: Encodable {
    let stream: String
    let lastRevision: UInt64
    let firstVisibleRevision: UInt64
    let deleted: Bool
    let createdAt: Int64
    let lastRecordedAt: Int64
}

/// `delete`.
struct StreamDeletedOutput: Encodable {
    let stream: String
    let deleted = true
}

/// `subscribe`'s markers.
struct CaughtUpOutput: Encodable { let caughtUp: UInt64 }
struct CheckpointOutput: Encodable { let checkpoint: UInt64 }

/// `at`'s closing line.
struct StreamAtOutput: Encodable {
    let stream: String
    let at: Int64
    let revision: UInt64
    let deleted: Bool
}

/// `snapshot save` (no payload) and `snapshot load` (with it).
struct SnapshotOutput: Encodable {
    let stream: String
    let revision: UInt64
    let recordedAt: Int64
    let savedAt: Int64
    let contentType: String?
    let payload: String?

    init(_ snapshot: StrataClient.Snapshot, withPayload: Bool) {
        stream = snapshot.stream
        revision = snapshot.revision
        recordedAt = snapshot.recordedAt
        savedAt = snapshot.savedAt
        contentType = withPayload ? snapshot.contentType : nil
        payload = withPayload ? String(decoding: snapshot.payload, as: UTF8.self) : nil
    }
}

/// `tenant create`, `list`, `quota`, `restore`.
struct TenantOutput: Encodable {
    let name: String
    let createdAt: Int64
    let maxSizeBytes: UInt64

    init(_ info: TenantInfo) {
        name = info.name
        createdAt = info.createdAt
        maxSizeBytes = info.maxSizeBytes
    }
}

/// `tenant delete`.
struct TenantDeletedOutput: Encodable {
    let deleted: String
    let callsEnded: Int
    let projectionsStopped: Int
    let keysRemoved: Int
}

/// `tenant stats`.
struct TenantStatsOutput: Encodable {
    struct Projection: Encodable {
        let name: String
        let state: String
        let position: UInt64
        let lag: UInt64
    }
    let tenant: String
    let events: UInt64
    let streams: UInt64
    let headPosition: UInt64
    let lastWriteAt: Int64
    let usedBytes: UInt64
    let maxSizeBytes: UInt64
    let fileBytes: UInt64
    let projections: [Projection]

    init(_ s: TenantStats) {
        tenant = s.name
        events = s.events
        streams = s.streams
        headPosition = s.headPosition
        lastWriteAt = s.lastWriteAt ?? 0
        usedBytes = s.usedBytes
        maxSizeBytes = s.maxSizeBytes
        fileBytes = s.fileBytes
        projections = s.projections.map { Projection(name: $0.name, state: $0.state, position: $0.position, lag: $0.lag) }
    }
}

/// `tenant backup`.
struct BackupOutput: Encodable {
    let backup: String
    let path: String
    let bytes: UInt64
    let headPositionAtLeast: UInt64
}

/// `tenant verify`.
struct VerifyOutput: Encodable {
    struct Issue: Encodable {
        let kind: String
        let position: UInt64
        let stream: String
        let detail: String
    }
    let consistent: Bool
    let eventsChecked: UInt64
    let streamsChecked: UInt64
    let indexEntriesChecked: UInt64
    let headPosition: UInt64
    let issueCount: UInt64
    let issues: [Issue]

    init(_ report: VerifyResult) {
        consistent = report.isConsistent
        eventsChecked = report.eventsChecked
        streamsChecked = report.streamsChecked
        indexEntriesChecked = report.indexEntriesChecked
        headPosition = report.headPosition
        issueCount = report.issueCount
        issues = report.issues.map { Issue(kind: $0.kind, position: $0.position, stream: $0.stream, detail: $0.detail) }
    }
}

/// `tenant compact`.
struct CompactOutput: Encodable {
    let bytesBefore: UInt64
    let bytesAfter: UInt64
}

/// `key create` (with the secret, shown once), `list`, `revoke`.
struct KeyOutput: Encodable {
    let id: String
    let tenant: String
    let role: String
    let label: String
    let createdAt: Int64
    let revokedAt: Int64
    let secret: String?

    init(_ key: KeyInfo, secret: String? = nil) {
        id = key.id
        tenant = key.tenant
        role = key.role?.rawValue ?? ""
        label = key.label
        createdAt = key.createdAt
        revokedAt = key.revokedAt ?? 0
        self.secret = secret
    }
}

/// `projection load`, `status`, `list`, `pause`, `resume`, `reset`, `update`.
struct ProjectionOutput: Encodable {
    let name: String
    let state: String
    let fault: String
    let faultPosition: UInt64
    let checkpointPosition: UInt64
    let position: UInt64
    let headPosition: UInt64
    let lag: UInt64
    let eventsHandled: UInt64
    let eventsEmitted: UInt64
    let eventsPerSecond: Double
    let partitioned: Bool
    let generation: UInt64
    let lastCommitAt: Int64
    let progress: Double

    init(_ info: ProjectionInfo) {
        name = info.name
        state = info.state.rawValue
        fault = info.fault
        faultPosition = info.faultPosition
        checkpointPosition = info.checkpointPosition
        position = info.position
        headPosition = info.headPosition
        lag = info.lag
        eventsHandled = info.eventsHandled
        eventsEmitted = info.eventsEmitted
        eventsPerSecond = info.eventsPerSecond
        partitioned = info.partitioned
        generation = info.generation
        lastCommitAt = info.lastCommitAt
        progress = info.progress
    }
}

/// `projection delete`.
struct ProjectionDeletedOutput: Encodable { let deleted: String }
