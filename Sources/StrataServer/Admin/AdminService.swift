import Dispatch
import StrataProto
import StrataStorage
import StrataSupport
import StrataWire
import SwiftProtobuf

/// The Admin service (proto/strata/v1/admin.proto). Tenant management needs
/// the server admin key; the rest acts on the call's tenant and needs its
/// admin key (or the server admin key). Unary calls touch the disk, so they
/// run on `work`, never on a connection's queue; long operations stream
/// progress through `OperationSource`.
public struct AdminService: RPCService {
    let tenants: TenantDirectory
    private let work = DispatchQueue(label: "strata.admin.calls", attributes: .concurrent)
    /// Long operations running now, against `maxOperations`: each blocks a
    /// thread for its whole run, so a caller must not be able to start
    /// enough of them to starve the server's Dispatch threads.
    private let running = OperationSlots()
    let maxOperations: Int

    public init(tenants: TenantDirectory, maxOperations: Int = 2) {
        self.tenants = tenants
        self.maxOperations = maxOperations
    }

    public func register(in router: inout Router) {
        let tenants = self.tenants
        unary(&router, AdminMethod.createTenant, .serverAdmin, Strata_V1_CreateTenantRequest.self) { request, _ in
            let record = try tenants.createTenant(request.name, maxSizeBytes: try Self.quota(request.maxSizeBytes))
            return Self.info(record, tenants)
        }
        unary(&router, AdminMethod.listTenants, .serverAdmin, Strata_V1_ListTenantsRequest.self) { _, _ in
            let records = try tenants.tenants()
            return Strata_V1_ListTenantsResponse.with { $0.tenants = records.map { Self.info($0, tenants) } }
        }
        unary(&router, AdminMethod.deleteTenant, .serverAdmin, Strata_V1_DeleteTenantRequest.self) { request, _ in
            guard request.confirm == request.name else {
                throw RPCError.invalidArgument(field: "confirm", reason: "must repeat the tenant's name ('\(request.name)') to confirm the deletion")
            }
            let deletion = try tenants.deleteTenant(request.name)
            return Strata_V1_DeleteTenantResponse.with {
                $0.name = request.name
                $0.callsEnded = UInt32(clamping: deletion.callsEnded)
                $0.projectionsStopped = UInt32(clamping: deletion.projectionsStopped)
                $0.keysRemoved = UInt32(clamping: deletion.keysRemoved)
            }
        }
        unary(&router, AdminMethod.setTenantQuota, .serverAdmin, Strata_V1_SetTenantQuotaRequest.self) { request, _ in
            let record = try tenants.setQuota(request.name, maxSizeBytes: try Self.quota(request.maxSizeBytes))
            return Self.info(record, tenants)
        }
        operation(&router, AdminMethod.restoreTenant, .serverAdmin, Strata_V1_RestoreTenantRequest.self) { request, _, progress in
            let (record, bytes) = try tenants.restore(request.name, from: request.backup,
                                                       maxSizeBytes: try Self.quota(request.maxSizeBytes), progress: progress)
            return Strata_V1_OperationUpdate.with {
                $0.restore = .with {
                    $0.tenant = Self.info(record, tenants)
                    $0.bytes = bytes
                }
            }
        }
        unary(&router, AdminMethod.getTenantStats, .tenant(.admin), Strata_V1_GetTenantStatsRequest.self) { _, context in
            let (statistics, projections) = try tenants.statistics(context.tenant)
            return Strata_V1_TenantStats.with {
                $0.name = context.tenant
                $0.events = statistics.events
                $0.streams = statistics.streams
                $0.headPosition = statistics.headPosition
                $0.lastWriteAt = statistics.lastWriteAt ?? 0
                $0.usedBytes = statistics.usedBytes
                $0.maxSizeBytes = statistics.mapSize
                $0.fileBytes = statistics.fileBytes
                $0.projections = projections.map { status in
                    .with {
                        $0.name = status.name
                        $0.state = status.state.rawValue
                        $0.position = status.position
                        $0.lag = statistics.headPosition > status.position ? statistics.headPosition - status.position : 0
                    }
                }
            }
        }
        operation(&router, AdminMethod.backupTenant, .tenant(.admin), Strata_V1_BackupTenantRequest.self) { request, context, progress in
            let manifest = try tenants.backup(context.tenant, name: request.name, progress: progress)
            return Strata_V1_OperationUpdate.with {
                $0.backup = .with {
                    $0.name = request.name
                    // Relative to the server's backup directory: what restore takes.
                    $0.path = "\(context.tenant)/\(request.name)"
                    $0.bytes = manifest.bytes
                    $0.headPositionAtLeast = manifest.headPositionAtLeast
                }
            }
        }
        operation(&router, AdminMethod.verifyTenant, .tenant(.admin), Strata_V1_VerifyTenantRequest.self) { request, context, progress in
            let report = try tenants.verify(context.tenant, maxIssues: request.maxIssues == 0 ? 1000 : Int(request.maxIssues),
                                            progress: progress)
            return Strata_V1_OperationUpdate.with {
                $0.verify = .with {
                    $0.eventsChecked = report.eventsChecked
                    $0.streamsChecked = report.streamsChecked
                    $0.indexEntriesChecked = report.indexEntriesChecked
                    $0.headPosition = report.headPosition
                    $0.issueCount = report.issueCount
                    $0.issues = report.issues.map { issue in
                        .with {
                            $0.kind = issue.kind
                            $0.position = issue.position
                            $0.stream = issue.stream
                            $0.detail = issue.detail
                        }
                    }
                }
            }
        }
        operation(&router, AdminMethod.compactTenant, .tenant(.admin), Strata_V1_CompactTenantRequest.self) { _, context, progress in
            let sizes = try tenants.compact(context.tenant, progress: progress)
            return Strata_V1_OperationUpdate.with {
                $0.compact = .with {
                    $0.bytesBefore = UInt64(sizes.before)
                    $0.bytesAfter = UInt64(sizes.after)
                }
            }
        }
        unary(&router, AdminMethod.createKey, .tenant(.admin), Strata_V1_CreateKeyRequest.self) { request, context in
            guard let role = Role(proto: request.role) else {
                throw RPCError.invalidArgument(field: "role", reason: "one of read, write, admin")
            }
            let (record, key) = try tenants.createKey(context.tenant, role: role, label: request.label)
            return Strata_V1_CreateKeyResponse.with {
                $0.key = Self.info(record)
                $0.secret = key.text
            }
        }
        unary(&router, AdminMethod.listKeys, .tenant(.admin), Strata_V1_ListKeysRequest.self) { _, context in
            let records = try tenants.keys(context.tenant)
            return Strata_V1_ListKeysResponse.with { $0.keys = records.map(Self.info) }
        }
        unary(&router, AdminMethod.revokeKey, .tenant(.admin), Strata_V1_RevokeKeyRequest.self) { request, context in
            Self.info(try tenants.revokeKey(context.tenant, id: request.id))
        }
    }

    static func quota(_ bytes: UInt64) throws(RPCError) -> Int? {
        guard bytes != 0 else { return nil }
        guard bytes <= UInt64(TenantDirectory.quotaRange.upperBound) else {
            throw .invalidArgument(field: "max_size_bytes", reason: "at most \(TenantDirectory.quotaRange.upperBound) bytes")
        }
        return Int(bytes)
    }

    static func info(_ record: TenantRecord, _ tenants: TenantDirectory) -> Strata_V1_TenantInfo {
        .with {
            $0.name = record.name
            $0.createdAt = record.createdAt
            $0.maxSizeBytes = UInt64(tenants.quota(of: record))
        }
    }

    static func info(_ record: KeyRecord) -> Strata_V1_KeyInfo {
        .with {
            $0.id = record.id
            $0.tenant = record.tenant
            $0.role = record.role.proto
            $0.label = record.label
            $0.createdAt = record.createdAt
            $0.revokedAt = record.revokedAt ?? 0
        }
    }

    private func unary<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ router: inout Router, _ method: String, _ permission: Permission, _: Request.Type,
        _ body: @escaping @Sendable (Request, CallContext) throws -> Response
    ) {
        router.unary(method, permission, Request.self, on: work, body)
    }

    private func operation<Request: SwiftProtobuf.Message>(
        _ router: inout Router, _ method: String, _ permission: Permission, _: Request.Type,
        _ body: @escaping @Sendable (Request, CallContext, ProgressHandler) throws -> Strata_V1_OperationUpdate
    ) {
        let running = self.running
        let limit = maxOperations
        router.serverStreaming(method, permission, Request.self) { request, context throws(RPCError) in
            guard running.take(limit: limit) else {
                throw RPCError(.resourceExhausted, "\(limit) admin operation(s) are already running (limits.max_admin_operations); retry when one finishes")
            }
            return OperationSource { progress in
                defer { running.give() }
                return try body(request, context, progress)
            }
        }
    }
}

extension Role {
    init?(proto: Strata_V1_KeyRole) {
        switch proto {
        case .read: self = .read
        case .write: self = .write
        case .admin: self = .admin
        default: return nil
        }
    }

    var proto: Strata_V1_KeyRole {
        switch self {
        case .read: .read
        case .write: .write
        case .admin: .admin
        }
    }
}

/// A counter of running operations under a limit. Thread-safe (a `Locked`).
final class OperationSlots: Sendable {
    private let count = Locked(0)

    /// Takes a slot if fewer than `limit` are taken.
    func take(limit: Int) -> Bool {
        count.withLock { count in
            guard count < limit else { return false }
            count += 1
            return true
        }
    }

    func give() {
        count.withLock { $0 -= 1 }
    }
}
