import Dispatch
import Foundation
import StrataProjections
import StrataProto
import StrataStorage
import StrataWire

/// The Projections service. Commands wait for the store's writer (and a
/// state-as-of-T query replays events), so every call runs on `work`, never
/// on a connection's queue.
public struct ProjectionsService: RPCService {
    let manager: ProjectionManager
    private let work = DispatchQueue(label: "strata.projections.calls", attributes: .concurrent)

    public init(manager: ProjectionManager) {
        self.manager = manager
    }

    public func register(in router: inout Router) {
        unary(&router, ProjectionsMethod.create, Strata_V1_CreateProjectionRequest.self) { engine, request in
            try Self.response(engine.create(name: request.name, script: request.script))
        }
        unary(&router, ProjectionsMethod.update, Strata_V1_UpdateProjectionRequest.self) { engine, request in
            try engine.update(name: request.name, script: request.script, compatible: request.compatible)
            return try Self.response(engine.status(request.name))
        }
        unary(&router, ProjectionsMethod.list, Strata_V1_ListProjectionsRequest.self, .read) { engine, _ in
            var response = Strata_V1_ListProjectionsResponse()
            response.projections = try engine.list().map(Self.info)
            return response
        }
        unary(&router, ProjectionsMethod.getStatus, Strata_V1_ProjectionRequest.self, .read) { engine, request in
            try Self.response(engine.status(request.name))
        }
        unary(&router, ProjectionsMethod.getState, Strata_V1_GetProjectionStateRequest.self, .read) { engine, request in
            var response = Strata_V1_GetProjectionStateResponse()
            if request.hasAtTime {
                let (json, position) = try engine.state(request.name, partition: request.partition, at: request.atTime)
                response.found = json != nil
                response.stateJson = Data(json ?? [])
                response.position = position
            } else {
                let (json, checkpoint) = try engine.state(request.name, partition: request.partition)
                response.found = json != nil
                response.stateJson = Data(json ?? [])
                response.position = checkpoint.position
            }
            return response
        }
        unary(&router, ProjectionsMethod.listPartitions, Strata_V1_ListPartitionsRequest.self, .read) { engine, request in
            let limit = request.limit == 0 ? 100 : Int(request.limit)
            guard limit <= 1000 else {
                throw RPCError.invalidArgument(field: "limit", reason: "at most 1000 keys per page")
            }
            let page = try engine.partitions(request.name, prefix: request.prefix,
                                             after: request.after.isEmpty ? nil : request.after, limit: limit)
            var response = Strata_V1_ListPartitionsResponse()
            response.partitions = page.keys
            response.more = page.more
            return response
        }
        unary(&router, ProjectionsMethod.pause, Strata_V1_ProjectionRequest.self) { engine, request in
            try engine.pause(request.name)
            return try Self.response(engine.status(request.name))
        }
        unary(&router, ProjectionsMethod.resume, Strata_V1_ProjectionRequest.self) { engine, request in
            try engine.resume(request.name)
            return try Self.response(engine.status(request.name))
        }
        unary(&router, ProjectionsMethod.reset, Strata_V1_ProjectionRequest.self) { engine, request in
            try engine.reset(request.name)
            return try Self.response(engine.status(request.name))
        }
        unary(&router, ProjectionsMethod.delete, Strata_V1_ProjectionRequest.self) { engine, request in
            try engine.delete(request.name)
            return Strata_V1_DeleteProjectionResponse()
        }
    }

    /// Registers a unary method whose body runs on `work` with the tenant's engine.
    private func unary<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ router: inout Router, _ method: String, _: Request.Type, _ role: Role = .admin,
        _ body: @escaping @Sendable (ProjectionEngine, Request) throws -> Response
    ) {
        let manager = self.manager
        router.unary(method, .tenant(role), Request.self, on: work) { request, context in
            try body(try manager.engine(for: context.tenant), request)
        }
    }

    static func response(_ status: ProjectionStatus) -> Strata_V1_ProjectionResponse {
        var response = Strata_V1_ProjectionResponse()
        response.projection = info(status)
        return response
    }

    static func info(_ status: ProjectionStatus) -> Strata_V1_ProjectionInfo {
        var info = Strata_V1_ProjectionInfo()
        info.name = status.name
        info.state = switch status.state {
        case .running: .running
        case .paused: .paused
        case .faulted: .faulted
        case .stopped: .stopped
        }
        info.fault = status.fault ?? ""
        info.faultPosition = status.faultPosition ?? 0
        info.checkpointPosition = status.checkpoint
        info.position = status.position
        info.headPosition = status.headPosition
        info.lag = status.lag
        info.eventsHandled = status.eventsHandled
        info.eventsEmitted = status.eventsEmitted
        info.eventsPerSecond = status.eventsPerSecond
        info.partitioned = status.partitioned
        info.generation = status.generation
        info.lastCommitAt = status.lastCommitAt
        info.progress = status.progress
        return info
    }
}

import SwiftProtobuf
