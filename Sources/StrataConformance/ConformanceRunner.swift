import Foundation
import StrataProto
import SwiftProtobuf

/// How one case went.
public struct CaseResult: Sendable {
    public let name: String
    /// nil when it passed; else which step failed and why.
    public let failure: String?
    public let duration: Duration
    public var passed: Bool { failure == nil }
}

/// Runs conformance cases against a server over raw sockets.
///
/// Before the cases it creates, with the server admin key, a fresh tenant
/// with a key of each role, and a second tenant; afterwards it deletes
/// both. Cases refer to them through variables (`$tenant`, `$read_key`, …,
/// see proto/conformance/README.md).
public final class ConformanceRunner {
    public let host: String
    public let port: UInt16
    private let adminKey: String
    /// How long an expectation waits by default.
    public var timeout: Duration = .seconds(10)
    private var variables: [String: String] = [:]

    public init(host: String, port: UInt16, adminKey: String) {
        self.host = host
        self.port = port
        self.adminKey = adminKey
    }

    static let statusCodes: [String: UInt32] = [
        "OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4, "NOT_FOUND": 5,
        "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8, "FAILED_PRECONDITION": 9, "ABORTED": 10,
        "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12, "INTERNAL": 13, "UNAVAILABLE": 14, "DATA_LOSS": 15, "UNAUTHENTICATED": 16,
    ]

    static func statusName(_ code: UInt32) -> String {
        statusCodes.first { $0.value == code }?.key ?? "code \(code)"
    }

    /// Runs `cases` (set up and torn down around them), reporting each
    /// result through `report` as it finishes.
    public func run(_ cases: [ConformanceCase], report: (CaseResult) -> Void = { _ in }) throws -> [CaseResult] {
        let run = String(UInt32.random(in: 0 ... .max), radix: 36)
        let tenant = "conformance-\(run)", other = "conformance-\(run)-other"
        try setUp(tenant: tenant, other: other)
        defer { tearDown([tenant, other]) }
        var results: [CaseResult] = []
        for (index, conformanceCase) in cases.enumerated() {
            variables["$unique"] = "\(run)-\(index)"
            variables["$word"] = "\(run)x\(index)"  // letters and digits only (category names)
            let started = ContinuousClock.now
            let failure = CaseExecution(runner: self, variables: variables).run(conformanceCase)
            let result = CaseResult(name: conformanceCase.name, failure: failure, duration: ContinuousClock.now - started)
            results.append(result)
            report(result)
        }
        return results
    }

    // MARK: - Setup

    private func setUp(tenant: String, other: String) throws {
        let admin = Admin(connection: try WireConnection(host: host, port: port), timeout: timeout)
        try admin.handshake()
        var nextCall: UInt32 = 1
        func unary<Response: SwiftProtobuf.Message>(_ method: String, tenant: String?, key: String,
                                                    _ request: some SwiftProtobuf.Message) throws -> Response {
            defer { nextCall += 2 }
            return try admin.unary(callID: nextCall, method: method, tenant: tenant, key: key, request)
        }
        for name in [tenant, other] {
            let _: Strata_V1_TenantInfo = try unary("/strata.v1.Admin/CreateTenant", tenant: nil, key: adminKey,
                                                    Strata_V1_CreateTenantRequest.with { $0.name = name })
        }
        variables = ["$tenant": tenant, "$other_tenant": other, "$missing_tenant": "conformance-\(String(UInt32.random(in: 0 ... .max), radix: 36))-missing",
                     "$server_admin_key": adminKey, "$bad_key": "strata_0000000000000000_not-a-real-secret"]
        for (variable, role, inTenant) in [("$read_key", Strata_V1_KeyRole.read, tenant), ("$write_key", .write, tenant),
                                           ("$admin_key", .admin, tenant), ("$other_admin_key", .admin, other)] {
            let created: Strata_V1_CreateKeyResponse = try unary("/strata.v1.Admin/CreateKey", tenant: inTenant, key: adminKey,
                                                                 Strata_V1_CreateKeyRequest.with {
                                                                     $0.role = role
                                                                     $0.label = "conformance"
                                                                 })
            variables[variable] = created.secret
            variables[variable + "_id"] = created.key.id
        }
    }

    private func tearDown(_ tenants: [String]) {
        // A case that filled the server's connection limit leaves it full
        // until the server has counted those connections down: retry briefly.
        var admin: Admin?
        for _ in 0 ..< 20 {
            if let connection = try? WireConnection(host: host, port: port) {
                let candidate = Admin(connection: connection, timeout: timeout)
                if (try? candidate.handshake()) != nil, candidate.accepted() {
                    admin = candidate
                    break
                }
            }
            Thread.sleep(forTimeInterval: 0.1)
        }
        guard let admin else { return }
        for (index, name) in tenants.enumerated() {
            let _: Strata_V1_DeleteTenantResponse? = try? admin.unary(
                callID: UInt32(index * 2 + 1), method: "/strata.v1.Admin/DeleteTenant", tenant: nil, key: adminKey,
                Strata_V1_DeleteTenantRequest.with {
                    $0.name = name
                    $0.confirm = name
                })
        }
    }

    /// Minimal unary calls for setup, on the runner's own framing.
    private struct Admin {
        let connection: WireConnection
        let timeout: Duration

        func handshake() throws {
            connection.send(WireConnection.preface + WireFrame(type: WireFrame.settings, flags: 0, callID: 0, payload: []).encoded)
            guard case .preface(let preface) = connection.next(timeout: timeout), preface == WireConnection.preface else {
                throw ConformanceError("setup: the server did not send the preface")
            }
        }

        /// True when the server sent its SETTINGS (false: a GOAWAY, refused).
        func accepted() -> Bool {
            if case .frame(let frame) = connection.next(timeout: timeout) { return frame.type == WireFrame.settings }
            return false
        }

        func unary<Response: SwiftProtobuf.Message>(callID: UInt32, method: String, tenant: String?, key: String,
                                                    _ request: some SwiftProtobuf.Message) throws -> Response {
            var headers = Strata_V1_CallHeaders()
            headers.method = method
            headers.metadata["authorization"] = "Bearer \(key)"
            if let tenant { headers.metadata["tenant"] = tenant }
            connection.send(WireFrame(type: WireFrame.headers, flags: 0, callID: callID, payload: try headers.serializedBytes()).encoded
                + WireFrame(type: WireFrame.message, flags: 1, callID: callID, payload: try request.serializedBytes()).encoded)
            var response: Response?
            let deadline = ContinuousClock.now + timeout
            while true {
                switch connection.next(timeout: deadline - .now) {
                case .frame(let frame) where frame.callID == callID && frame.type == WireFrame.message:
                    response = try Response(serializedBytes: frame.payload)
                case .frame(let frame) where frame.callID == callID && frame.type == WireFrame.trailers:
                    let trailers = try Strata_V1_Trailers(serializedBytes: frame.payload)
                    guard trailers.code == 0, let response else {
                        throw ConformanceError("setup: \(method) failed: \(ConformanceRunner.statusName(trailers.code)) \(trailers.message)")
                    }
                    return response
                case .frame, .preface:
                    continue
                case .closed:
                    throw ConformanceError("setup: the server closed the connection during \(method)")
                case .timedOut:
                    throw ConformanceError("setup: no answer to \(method) within \(timeout)")
                }
            }
        }
    }
}
