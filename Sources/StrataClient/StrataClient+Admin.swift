import StrataProto
import StrataWire
import SwiftProtobuf

/// A tenant in the server's registry.
public struct TenantInfo: Sendable, Hashable {
    public let name: String
    /// Nanoseconds since the Unix epoch.
    public let createdAt: Int64
    /// The size quota in effect, bytes.
    public let maxSizeBytes: UInt64

    init(_ proto: Strata_V1_TenantInfo) {
        name = proto.name
        createdAt = proto.createdAt
        maxSizeBytes = proto.maxSizeBytes
    }
}

/// What an API key may do in its tenant.
public enum KeyRole: String, Sendable, Hashable, CaseIterable {
    case read, write, admin

    var proto: Strata_V1_KeyRole {
        switch self {
        case .read: .read
        case .write: .write
        case .admin: .admin
        }
    }

    init?(_ proto: Strata_V1_KeyRole) {
        switch proto {
        case .read: self = .read
        case .write: self = .write
        case .admin: self = .admin
        default: return nil
        }
    }
}

/// An API key as listed: never its secret.
public struct KeyInfo: Sendable, Hashable {
    public let id: String
    public let tenant: String
    public let role: KeyRole?
    public let label: String
    public let createdAt: Int64
    /// nil while the key is valid.
    public let revokedAt: Int64?

    init(_ proto: Strata_V1_KeyInfo) {
        id = proto.id
        tenant = proto.tenant
        role = KeyRole(proto.role)
        label = proto.label
        createdAt = proto.createdAt
        revokedAt = proto.revokedAt == 0 ? nil : proto.revokedAt
    }
}

/// A tenant's size and activity.
public struct TenantStats: Sendable, Hashable {
    public struct Projection: Sendable, Hashable {
        public let name: String
        public let state: String
        public let position: UInt64
        public let lag: UInt64
    }
    public let name: String
    public let events: UInt64
    public let streams: UInt64
    public let headPosition: UInt64
    /// Nanoseconds since the epoch; nil for an empty tenant.
    public let lastWriteAt: Int64?
    public let usedBytes: UInt64
    public let maxSizeBytes: UInt64
    public let fileBytes: UInt64
    public let projections: [Projection]
}

/// Progress of a long admin operation.
public struct OperationProgress: Sendable, Hashable {
    public let phase: String
    public let done: UInt64
    /// 0 when unknown.
    public let total: UInt64
    public let unit: String
    /// done / total, or nil when the total is unknown.
    public var fraction: Double? { total == 0 ? nil : min(1, Double(done) / Double(total)) }
}

public struct BackupResult: Sendable, Hashable {
    public let name: String
    /// Where the server wrote it.
    public let path: String
    public let bytes: UInt64
    public let headPositionAtLeast: UInt64
}

public struct VerifyIssue: Sendable, Hashable {
    public let kind: String
    public let position: UInt64
    public let stream: String
    public let detail: String
}

public struct VerifyResult: Sendable, Hashable {
    public let eventsChecked: UInt64
    public let streamsChecked: UInt64
    public let indexEntriesChecked: UInt64
    public let headPosition: UInt64
    public let issueCount: UInt64
    public let issues: [VerifyIssue]
    public var isConsistent: Bool { issueCount == 0 }
}

extension StrataClient {
    // MARK: - Tenants (server admin key)

    public func createTenant(_ name: String, maxSizeBytes: UInt64 = 0, timeout: Duration? = nil) async throws(StrataClient.Error) -> TenantInfo {
        let request = Strata_V1_CreateTenantRequest.with {
            $0.name = name
            $0.maxSizeBytes = maxSizeBytes
        }
        let response: Strata_V1_TenantInfo = try await unary(AdminMethod.createTenant, request, timeout: timeout)
        return TenantInfo(response)
    }

    public func tenants(timeout: Duration? = nil) async throws(StrataClient.Error) -> [TenantInfo] {
        let response: Strata_V1_ListTenantsResponse = try await unary(AdminMethod.listTenants, Strata_V1_ListTenantsRequest(), timeout: timeout)
        return response.tenants.map(TenantInfo.init)
    }

    /// Deletes a tenant and everything in it. `confirm` must repeat `name`.
    /// Returns how many streaming calls were ended, projections stopped and
    /// keys removed.
    public func deleteTenant(_ name: String, confirm: String, timeout: Duration? = nil) async throws(StrataClient.Error)
        -> (callsEnded: Int, projectionsStopped: Int, keysRemoved: Int) {
        let request = Strata_V1_DeleteTenantRequest.with {
            $0.name = name
            $0.confirm = confirm
        }
        let response: Strata_V1_DeleteTenantResponse = try await unary(AdminMethod.deleteTenant, request, timeout: timeout)
        return (Int(response.callsEnded), Int(response.projectionsStopped), Int(response.keysRemoved))
    }

    /// Changes a tenant's size quota (0: the server's default). The tenant
    /// is briefly unavailable while its environment reopens.
    public func setTenantQuota(_ name: String, maxSizeBytes: UInt64, timeout: Duration? = nil) async throws(StrataClient.Error) -> TenantInfo {
        let request = Strata_V1_SetTenantQuotaRequest.with {
            $0.name = name
            $0.maxSizeBytes = maxSizeBytes
        }
        let response: Strata_V1_TenantInfo = try await unary(AdminMethod.setTenantQuota, request, timeout: timeout)
        return TenantInfo(response)
    }

    /// Creates tenant `name` from the server-side backup `backup`
    /// (`"<tenant>/<backup name>"`, as `BackupResult.path` gives it).
    public func restoreTenant(_ name: String, fromBackup backup: String, maxSizeBytes: UInt64 = 0, timeout: Duration? = nil,
                              progress: @Sendable (OperationProgress) -> Void = { _ in }) async throws(StrataClient.Error) -> TenantInfo {
        let request = Strata_V1_RestoreTenantRequest.with {
            $0.name = name
            $0.backup = backup
            $0.maxSizeBytes = maxSizeBytes
        }
        let result = try await operation(AdminMethod.restoreTenant, request, timeout: timeout, progress: progress)
        guard case .restore(let restored)? = result.kind else { throw StrataClient.Error(.internal, "the server ended a restore without its result") }
        return TenantInfo(restored.tenant)
    }

    // MARK: - This tenant (its admin key, or the server admin key)

    public func tenantStats(timeout: Duration? = nil) async throws(StrataClient.Error) -> TenantStats {
        let r: Strata_V1_TenantStats = try await unary(AdminMethod.getTenantStats, Strata_V1_GetTenantStatsRequest(), timeout: timeout)
        return TenantStats(name: r.name, events: r.events, streams: r.streams, headPosition: r.headPosition,
                           lastWriteAt: r.lastWriteAt == 0 ? nil : r.lastWriteAt, usedBytes: r.usedBytes,
                           maxSizeBytes: r.maxSizeBytes, fileBytes: r.fileBytes,
                           projections: r.projections.map { .init(name: $0.name, state: $0.state, position: $0.position, lag: $0.lag) })
    }

    /// Backs the tenant up to `<backup directory>/<name>/` on the server while writes go on.
    public func backupTenant(name: String, timeout: Duration? = nil,
                             progress: @Sendable (OperationProgress) -> Void = { _ in }) async throws(StrataClient.Error) -> BackupResult {
        let result = try await operation(AdminMethod.backupTenant, Strata_V1_BackupTenantRequest.with { $0.name = name },
                                         timeout: timeout, progress: progress)
        guard case .backup(let b)? = result.kind else { throw StrataClient.Error(.internal, "the server ended a backup without its result") }
        return BackupResult(name: b.name, path: b.path, bytes: b.bytes, headPositionAtLeast: b.headPositionAtLeast)
    }

    /// Walks every index of the tenant and reports inconsistencies.
    public func verifyTenant(maxIssues: UInt32 = 0, timeout: Duration? = nil,
                             progress: @Sendable (OperationProgress) -> Void = { _ in }) async throws(StrataClient.Error) -> VerifyResult {
        let result = try await operation(AdminMethod.verifyTenant, Strata_V1_VerifyTenantRequest.with { $0.maxIssues = maxIssues },
                                         timeout: timeout, progress: progress)
        guard case .verify(let v)? = result.kind else { throw StrataClient.Error(.internal, "the server ended a verify without its result") }
        return VerifyResult(eventsChecked: v.eventsChecked, streamsChecked: v.streamsChecked, indexEntriesChecked: v.indexEntriesChecked,
                            headPosition: v.headPosition, issueCount: v.issueCount,
                            issues: v.issues.map { VerifyIssue(kind: $0.kind, position: $0.position, stream: $0.stream, detail: $0.detail) })
    }

    /// Compacts the tenant's data file; the tenant is unavailable meanwhile.
    public func compactTenant(timeout: Duration? = nil,
                              progress: @Sendable (OperationProgress) -> Void = { _ in }) async throws(StrataClient.Error) -> (bytesBefore: UInt64, bytesAfter: UInt64) {
        let result = try await operation(AdminMethod.compactTenant, Strata_V1_CompactTenantRequest(), timeout: timeout, progress: progress)
        guard case .compact(let c)? = result.kind else { throw StrataClient.Error(.internal, "the server ended a compaction without its result") }
        return (c.bytesBefore, c.bytesAfter)
    }

    /// Creates a key for this tenant; the returned secret is shown only now.
    public func createKey(role: KeyRole, label: String = "", timeout: Duration? = nil) async throws(StrataClient.Error) -> (key: KeyInfo, secret: String) {
        let request = Strata_V1_CreateKeyRequest.with {
            $0.role = role.proto
            $0.label = label
        }
        let response: Strata_V1_CreateKeyResponse = try await unary(AdminMethod.createKey, request, timeout: timeout)
        return (KeyInfo(response.key), response.secret)
    }

    public func keys(timeout: Duration? = nil) async throws(StrataClient.Error) -> [KeyInfo] {
        let response: Strata_V1_ListKeysResponse = try await unary(AdminMethod.listKeys, Strata_V1_ListKeysRequest(), timeout: timeout)
        return response.keys.map(KeyInfo.init)
    }

    public func revokeKey(_ id: String, timeout: Duration? = nil) async throws(StrataClient.Error) -> KeyInfo {
        let response: Strata_V1_KeyInfo = try await unary(AdminMethod.revokeKey, Strata_V1_RevokeKeyRequest.with { $0.id = id }, timeout: timeout)
        return KeyInfo(response)
    }

    /// Runs a streaming admin operation: progress messages, then the result.
    private func operation(_ method: String, _ request: some SwiftProtobuf.Message, timeout: Duration?,
                           progress: @Sendable (OperationProgress) -> Void) async throws(StrataClient.Error) -> Strata_V1_OperationUpdate {
        do {
            let (connection, id, call) = try await openStream(method, request, timeout: timeout)
            return try await withTaskCancellationHandler { () async throws -> Strata_V1_OperationUpdate in
                var result: Strata_V1_OperationUpdate?
                while let message = try await call.next() {
                    let update = try Strata_V1_OperationUpdate(serializedBytes: message)
                    connection.consumed(id, call)
                    if case .progress(let p)? = update.kind {
                        progress(OperationProgress(phase: p.phase, done: p.done, total: p.total, unit: p.unit))
                    } else {
                        result = update
                    }
                }
                guard let result else { throw StrataClient.Error(.internal, "\(method) ended without a result") }
                return result
            } onCancel: {
                connection.cancel(id)
            }
        } catch let error as RPCError {
            throw StrataClient.Error(error)
        } catch let error as StrataClient.Error {
            throw error
        } catch {
            throw StrataClient.Error(.internal, "\(error)")
        }
    }
}
