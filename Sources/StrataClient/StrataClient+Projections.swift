import Foundation
import StrataProto
import StrataWire

/// A projection's status as the server reports it.
public struct ProjectionInfo: Sendable, Hashable {
    public enum State: String, Sendable, Hashable {
        case running, paused, faulted, stopped, unknown
    }
    public let name: String
    public let state: State
    /// Why it faulted (empty unless faulted) and at which event.
    public let fault: String
    public let faultPosition: UInt64
    /// The last position whose effects are committed.
    public let checkpointPosition: UInt64
    public let position: UInt64
    public let headPosition: UInt64
    public let lag: UInt64
    public let eventsHandled: UInt64
    public let eventsEmitted: UInt64
    public let eventsPerSecond: Double
    public let partitioned: Bool
    public let generation: UInt64
    /// Nanoseconds since the Unix epoch; 0 if never committed.
    public let lastCommitAt: Int64
    /// Share of the log scanned (0…1): the progress of a reset.
    public let progress: Double

    init(_ proto: Strata_V1_ProjectionInfo) {
        name = proto.name
        state = switch proto.state {
        case .running: .running
        case .paused: .paused
        case .faulted: .faulted
        case .stopped: .stopped
        default: .unknown
        }
        fault = proto.fault
        faultPosition = proto.faultPosition
        checkpointPosition = proto.checkpointPosition
        position = proto.position
        headPosition = proto.headPosition
        lag = proto.lag
        eventsHandled = proto.eventsHandled
        eventsEmitted = proto.eventsEmitted
        eventsPerSecond = proto.eventsPerSecond
        partitioned = proto.partitioned
        generation = proto.generation
        lastCommitAt = proto.lastCommitAt
        progress = proto.progress
    }
}

/// A projection's state: JSON, and the position it reflects.
public struct ProjectionState: Sendable, Hashable {
    /// nil when the partition has no state (it never saw an event).
    public let json: Data?
    public let position: UInt64
}

extension StrataClient {
    /// Loads a Lua projection and starts it. A script that does not compile
    /// fails with INVALID_ARGUMENT naming the line.
    @discardableResult
    public func createProjection(_ name: String, script: String, timeout: Duration? = nil) async throws(StrataClient.Error) -> ProjectionInfo {
        var request = Strata_V1_CreateProjectionRequest()
        request.name = name
        request.script = script
        let response: Strata_V1_ProjectionResponse = try await unary(ProjectionsMethod.create, request, timeout: timeout)
        return ProjectionInfo(response.projection)
    }

    /// Replaces a projection's script; it rebuilds from the start unless
    /// `compatible` (then it keeps its state and checkpoint).
    @discardableResult
    public func updateProjection(_ name: String, script: String, compatible: Bool = false,
                                 timeout: Duration? = nil) async throws(StrataClient.Error) -> ProjectionInfo {
        var request = Strata_V1_UpdateProjectionRequest()
        request.name = name
        request.script = script
        request.compatible = compatible
        let response: Strata_V1_ProjectionResponse = try await unary(ProjectionsMethod.update, request, timeout: timeout)
        return ProjectionInfo(response.projection)
    }

    public func projections(timeout: Duration? = nil) async throws(StrataClient.Error) -> [ProjectionInfo] {
        let response: Strata_V1_ListProjectionsResponse = try await unary(ProjectionsMethod.list, Strata_V1_ListProjectionsRequest(),
                                                                         timeout: timeout)
        return response.projections.map(ProjectionInfo.init)
    }

    public func projectionStatus(_ name: String, timeout: Duration? = nil) async throws(StrataClient.Error) -> ProjectionInfo {
        try await projectionCommand(ProjectionsMethod.getStatus, name, timeout: timeout)
    }

    @discardableResult
    public func pauseProjection(_ name: String, timeout: Duration? = nil) async throws(StrataClient.Error) -> ProjectionInfo {
        try await projectionCommand(ProjectionsMethod.pause, name, timeout: timeout)
    }

    /// Resumes a paused or faulted projection from its last checkpoint.
    @discardableResult
    public func resumeProjection(_ name: String, timeout: Duration? = nil) async throws(StrataClient.Error) -> ProjectionInfo {
        try await projectionCommand(ProjectionsMethod.resume, name, timeout: timeout)
    }

    /// Drops the state and rebuilds from the first event; watch `progress`.
    @discardableResult
    public func resetProjection(_ name: String, timeout: Duration? = nil) async throws(StrataClient.Error) -> ProjectionInfo {
        try await projectionCommand(ProjectionsMethod.reset, name, timeout: timeout)
    }

    /// Removes the projection and its state (emitted events stay).
    public func deleteProjection(_ name: String, timeout: Duration? = nil) async throws(StrataClient.Error) {
        var request = Strata_V1_ProjectionRequest()
        request.name = name
        let _: Strata_V1_DeleteProjectionResponse = try await unary(ProjectionsMethod.delete, request, timeout: timeout)
    }

    /// A partition's state ("" for an unpartitioned projection): as of the
    /// last checkpoint, or as of `time` (nanoseconds since the epoch),
    /// computed by the server replaying the script.
    public func projectionState(_ name: String, partition: String = "", at time: Int64? = nil,
                                timeout: Duration? = nil) async throws(StrataClient.Error) -> ProjectionState {
        var request = Strata_V1_GetProjectionStateRequest()
        request.name = name
        request.partition = partition
        if let time { request.atTime = time }
        let response: Strata_V1_GetProjectionStateResponse = try await unary(ProjectionsMethod.getState, request, timeout: timeout)
        return ProjectionState(json: response.found ? response.stateJson : nil, position: response.position)
    }

    /// Partition keys starting with `prefix`, after `after`, at most `limit`
    /// (≤ 1000); `more` says whether another page follows.
    public func projectionPartitions(_ name: String, prefix: String = "", after: String? = nil, limit: Int = 100,
                                     timeout: Duration? = nil) async throws(StrataClient.Error) -> (keys: [String], more: Bool) {
        var request = Strata_V1_ListPartitionsRequest()
        request.name = name
        request.prefix = prefix
        request.after = after ?? ""
        request.limit = UInt32(clamping: limit)
        let response: Strata_V1_ListPartitionsResponse = try await unary(ProjectionsMethod.listPartitions, request, timeout: timeout)
        return (response.partitions, response.more)
    }

    private func projectionCommand(_ method: String, _ name: String, timeout: Duration?) async throws(StrataClient.Error) -> ProjectionInfo {
        var request = Strata_V1_ProjectionRequest()
        request.name = name
        let response: Strata_V1_ProjectionResponse = try await unary(method, request, timeout: timeout)
        return ProjectionInfo(response.projection)
    }
}
