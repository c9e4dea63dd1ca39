import StrataProto

/// A call's failure as it travels in TRAILERS: a canonical status code, a
/// message for people and, where useful, structured details for programs.
/// `cause` keeps the error it was made from (a storage error, a socket
/// error); it never travels and takes no part in equality.
public struct RPCError: Error, Sendable, Equatable, CustomStringConvertible {
    public var code: StatusCode
    public var message: String
    public var detail: Strata_V1_ErrorDetail?
    public var cause: (any Error)?

    public init(_ code: StatusCode, _ message: String, detail: Strata_V1_ErrorDetail? = nil, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.detail = detail
        self.cause = cause
    }

    public static func == (lhs: RPCError, rhs: RPCError) -> Bool {
        lhs.code == rhs.code && lhs.message == rhs.message && lhs.detail == rhs.detail
    }

    public var description: String { "\(code): \(message)" }

    /// The TRAILERS payload for this error.
    public var trailers: Strata_V1_Trailers {
        var trailers = Strata_V1_Trailers()
        trailers.code = code.rawValue
        trailers.message = message
        if let detail { trailers.detail = detail }
        return trailers
    }

    /// The error a TRAILERS payload describes, or nil for OK.
    public init?(trailers: Strata_V1_Trailers) {
        guard trailers.code != 0 else { return nil }
        self.init(StatusCode(rawValue: trailers.code) ?? .unknown, trailers.message,
                  detail: trailers.hasDetail ? trailers.detail : nil)
    }
}

/// Metadata keys every implementation understands (PROTOCOL.md, "Metadata").
public enum MetadataKey {
    public static let tenant = "tenant"
    public static let authorization = "authorization"
    public static let requestID = "request-id"
}

/// Method paths of the Streams service.
public enum StreamsMethod {
    public static let append = "/strata.v1.Streams/Append"
    public static let appendMulti = "/strata.v1.Streams/AppendMulti"
    public static let read = "/strata.v1.Streams/Read"
    public static let getStreamInfo = "/strata.v1.Streams/GetStreamInfo"
    public static let deleteStream = "/strata.v1.Streams/DeleteStream"
    public static let subscribe = "/strata.v1.Streams/Subscribe"
    public static let getPositionAt = "/strata.v1.Streams/GetPositionAt"
}

public enum ProjectionsMethod {
    public static let create = "/strata.v1.Projections/Create"
    public static let update = "/strata.v1.Projections/Update"
    public static let list = "/strata.v1.Projections/List"
    public static let getStatus = "/strata.v1.Projections/GetStatus"
    public static let getState = "/strata.v1.Projections/GetState"
    public static let listPartitions = "/strata.v1.Projections/ListPartitions"
    public static let pause = "/strata.v1.Projections/Pause"
    public static let resume = "/strata.v1.Projections/Resume"
    public static let reset = "/strata.v1.Projections/Reset"
    public static let delete = "/strata.v1.Projections/Delete"
}

public enum AdminMethod {
    public static let createTenant = "/strata.v1.Admin/CreateTenant"
    public static let listTenants = "/strata.v1.Admin/ListTenants"
    public static let deleteTenant = "/strata.v1.Admin/DeleteTenant"
    public static let setTenantQuota = "/strata.v1.Admin/SetTenantQuota"
    public static let restoreTenant = "/strata.v1.Admin/RestoreTenant"
    public static let getTenantStats = "/strata.v1.Admin/GetTenantStats"
    public static let backupTenant = "/strata.v1.Admin/BackupTenant"
    public static let verifyTenant = "/strata.v1.Admin/VerifyTenant"
    public static let compactTenant = "/strata.v1.Admin/CompactTenant"
    public static let createKey = "/strata.v1.Admin/CreateKey"
    public static let listKeys = "/strata.v1.Admin/ListKeys"
    public static let revokeKey = "/strata.v1.Admin/RevokeKey"
}

public enum SnapshotsMethod {
    public static let save = "/strata.v1.Snapshots/Save"
    public static let load = "/strata.v1.Snapshots/Load"
    public static let loadAggregate = "/strata.v1.Snapshots/LoadAggregate"
}

/// Protocol defaults (PROTOCOL.md, "Settings"): what a 0 in SETTINGS means.
public enum ProtocolDefaults {
    public static let maxFrameSize: UInt32 = 4 << 20
    public static let maxConcurrentCalls: UInt32 = 100
    public static let initialWindowMessages: UInt32 = 256
}
