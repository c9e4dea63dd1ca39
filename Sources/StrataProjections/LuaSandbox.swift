import CLua
import Foundation
import StrataStorage

/// Limits of one projection's Lua state.
public struct SandboxLimits: Sendable, Hashable {
    /// Bytes the Lua state may allocate (state, caches, temporaries).
    public var memoryBytes: Int
    /// VM instructions one call (one event, `init`, the script's top level)
    /// may run, checked every 1,000 instructions.
    public var instructionsPerCall: Int

    public init(memoryBytes: Int = 64 << 20, instructionsPerCall: Int = 1_000_000) {
        self.memoryBytes = memoryBytes
        self.instructionsPerCall = instructionsPerCall
    }
}

/// What a script declares: where its events come from and what it handles.
public struct ProjectionDefinition: Sendable, Hashable {
    public enum Source: Sendable, Hashable {
        case all
        case streams([String])
        case category(String)
    }
    public var source: Source
    /// Only these event types (nil: every type).
    public var types: [String]?
    /// Event types with a handler of their own (besides `$any`).
    public var handledTypes: [String]
    /// Whether a `$any` handler takes every other type.
    public var handlesAny: Bool
    public var partitioned: Bool

    /// Whether an event of `type` from `stream` reaches a handler. The store
    /// filter does the coarse work; this settles exact stream names.
    func accepts(stream: UnsafeRawBufferPointer) -> Bool {
        switch source {
        case .all, .category: true  // the category prefix is filtered by the store
        case .streams(let names): names.contains { $0.utf8.elementsEqual(stream) }
        }
    }

    /// The store-side filter: stream prefixes and event types.
    var filter: EventFilter {
        var filter = EventFilter()
        switch source {
        case .all: break
        case .streams(let names): filter.streamPrefixes = names
        case .category(let category): filter.streamPrefixes = [category + "-"]
        }
        if let types {
            filter.eventTypes = handlesAny ? types : types.filter(handledTypes.contains)
        } else if !handlesAny {
            filter.eventTypes = handledTypes
        }
        return filter
    }
}

/// What a checkpoint carries out of the sandbox: the partitions changed since
/// the last one, as JSON, and the events emitted meanwhile.
public struct SandboxOutput: Sendable {
    public struct Emitted: Sendable, Hashable {
        public let stream: String
        public let type: String
        public let json: [UInt8]
        /// The position of the event whose handler emitted it.
        public let causedBy: UInt64
    }
    public var states: [(partition: String, json: [UInt8])] = []
    public var emitted: [Emitted] = []
}

/// One projection's Lua 5.4 state, sandboxed: allow-listed globals, a memory
/// cap, an instruction budget per call, text chunks only.
///
/// Not thread-safe: a sandbox belongs to the one queue or thread that made
/// it (the projection's runner), like the `lua_State` inside it.
public final class LuaSandbox {
    private let state: OpaquePointer
    /// The allocator's accounting; its address is the allocator's user data,
    /// so it lives in its own allocation for the sandbox's lifetime.
    private let accounting: UnsafeMutablePointer<strata_sandbox>
    private let limits: SandboxLimits
    private let loaderBox: PartitionLoaderBox
    private var handleRef: Int32 = 0
    private var checkpointRef: Int32 = 0
    private var stateRef: Int32 = 0
    private var defineRef: Int32 = 0
    private var emittingRef: Int32 = 0

    /// Reads a partition's stored state (JSON) when a handler first touches it.
    public typealias PartitionLoader = (String) throws(ProjectionError) -> [UInt8]?

    public init(limits: SandboxLimits, loadPartition: @escaping PartitionLoader) throws(ProjectionError) {
        self.limits = limits
        accounting = UnsafeMutablePointer<strata_sandbox>.allocate(capacity: 1)
        guard let state = strata_sandbox_newstate(accounting) else {
            accounting.deallocate()
            throw .sandbox("cannot create a Lua state")
        }
        self.state = state
        loaderBox = PartitionLoaderBox(loadPartition)
        accounting.pointee.loader = { host, key, keyLength, json, length in
            guard let host, let key else { return -1 }
            let box = Unmanaged<PartitionLoaderBox>.fromOpaque(host).takeUnretainedValue()
            return box.load(key: key, length: keyLength, json: json, jsonLength: length)
        }
        accounting.pointee.host = Unmanaged.passUnretained(loaderBox).toOpaque()
        try setUp()  // on failure deinit closes the state: everything is initialized
    }

    deinit {
        lua_close(state)
        accounting.deallocate()
    }

    private func setUp() throws(ProjectionError) {
        guard strata_sandbox_open(state) == LUA_OK else { throw .sandbox(popMessage()) }
        strata_sandbox_arm(state, accounting, limits.memoryBytes, Int64(limits.instructionsPerCall))
        // The prelude returns the host table; it takes load_partition.
        let source = SandboxPrelude.source
        let status = source.utf8.withContiguousStorageIfAvailable { bytes in
            bytes.withMemoryRebound(to: CChar.self) { chars in
                "=prelude".withCString { strata_luaL_loadbuffer(state, chars.baseAddress, chars.count, $0) }
            }
        } ?? LUA_ERRSYNTAX
        guard status == LUA_OK else { throw .sandbox("prelude: \(popMessage())") }
        strata_sandbox_push_loader(state)
        guard strata_lua_pcall(state, 1, 1, 0) == LUA_OK, strata_lua_istable(state, -1) != 0 else {
            throw .sandbox("prelude: \(popMessage())")
        }
        func ref(_ name: String) -> Int32 {
            lua_getfield(state, -1, name)
            return luaL_ref(state, strata_lua_registryindex())
        }
        defineRef = ref("define")
        handleRef = ref("handle")
        checkpointRef = ref("checkpoint")
        stateRef = ref("state")
        emittingRef = ref("set_emitting")
        strata_lua_pop(state, 1)
    }

    /// Bytes the Lua state holds now.
    public var memoryUsed: Int { accounting.pointee.used }

    // MARK: - Calls

    /// Runs the script and reads its table. Syntax and load errors come back
    /// as `.invalidScript` with the line number.
    public func define(script: String, name: String) throws(ProjectionError) -> ProjectionDefinition {
        let json: [UInt8]
        do {
            json = try call(defineRef, [.string(script), .string(name)], results: 1, position: nil) { () throws(ProjectionError) in try stringResult() ?? [] }
        } catch .runtime(let message, _) {
            throw .invalidScript(Self.withoutTraceback(message))
        } catch .instructionBudgetExceeded(let limit, _) {
            throw .invalidScript("\(name): the script's top level ran more than \(limit) instructions")
        } catch .memoryLimitExceeded(let limit, _) {
            throw .invalidScript("\(name): the script's top level used more than \(limit) bytes")
        }
        guard let object = try? JSONSerialization.jsonObject(with: Data(json)) as? [String: Any] else {
            throw .sandbox("define returned no description")
        }
        func strings(_ key: String) -> [String]? { object[key] as? [String] }
        let source: ProjectionDefinition.Source
        if let streams = strings("streams") {
            source = .streams(streams)
        } else if let category = object["category"] as? String {
            source = .category(category)
        } else {
            source = .all
        }
        return ProjectionDefinition(source: source, types: strings("types"), handledTypes: strings("handlers") ?? [],
                                    handlesAny: object["any"] as? Bool ?? false,
                                    partitioned: object["partitioned"] as? Bool ?? false)
    }

    /// Hands one event to its handler. Returns whether a handler took it.
    @discardableResult
    public func handle(_ event: EventFieldBytes) throws(ProjectionError) -> Bool {
        try withUnsafeTemporaryAllocation(of: strata_argument.self, capacity: 9) { args throws(ProjectionError) -> Bool in
                func bytes(_ buffer: UnsafeRawBufferPointer, kind: Int32 = 0) -> strata_argument {
                    strata_argument(bytes: buffer.baseAddress?.assumingMemoryBound(to: CChar.self), length: buffer.count,
                                    integer: 0, kind: kind)
                }
                args[0] = bytes(event.type)
                args[1] = bytes(event.stream)
                args[2] = bytes(event.id)  // 16 bytes; the prelude formats them when read
                args[3] = strata_argument(bytes: nil, length: 0, integer: Int64(bitPattern: event.revision), kind: 1)
                args[4] = strata_argument(bytes: nil, length: 0, integer: Int64(bitPattern: event.position), kind: 1)
                args[5] = strata_argument(bytes: nil, length: 0, integer: event.recordedAt, kind: 1)
                args[6] = bytes(event.contentType, kind: 2)
                args[7] = bytes(event.data, kind: 2)
                args[8] = bytes(event.metadata, kind: 2)
                let status = strata_sandbox_call(state, accounting, handleRef, args.baseAddress, 9, 1)
                guard status == LUA_OK else { throw failure(status, position: event.position) }
                defer { strata_lua_pop(state, 1) }
                return lua_toboolean(state, -1) != 0
        }
    }

    /// Everything changed since the last checkpoint. After this the sandbox
    /// counts it as saved: if saving fails, discard the sandbox.
    public func checkpoint() throws(ProjectionError) -> SandboxOutput {
        let packed = try call(checkpointRef, [], results: 1, position: nil) { () throws(ProjectionError) in try stringResult() ?? [] }
        return try Self.unpack(packed)
    }

    /// A partition's state as JSON (nil when it has none), for replays.
    public func stateJSON(partition: String) throws(ProjectionError) -> [UInt8]? {
        try call(stateRef, [.string(partition)], results: 1, position: nil) { () throws(ProjectionError) in try stringResult() }
    }

    /// Whether `emit` records events (off while replaying history).
    public func setEmitting(_ on: Bool) throws(ProjectionError) {
        try call(emittingRef, [.boolean(on)], results: 0, position: nil) { () throws(ProjectionError) in }
    }

    // MARK: - Plumbing

    private enum Argument {
        case string(String)
        case boolean(Bool)
    }

    /// Calls a host function with owned arguments and reads its results with
    /// `read` before the stack is reset.
    private func call<R>(_ ref: Int32, _ arguments: [Argument], results: Int32, position: UInt64?,
                         _ read: () throws(ProjectionError) -> R) throws(ProjectionError) -> R {
        let base = lua_gettop(state)
        defer { lua_settop(state, base) }
        // Every string's bytes in one buffer that outlives the call.
        var bytes: [CChar] = []
        var spans: [Range<Int>?] = []
        for argument in arguments {
            if case .string(let text) = argument {
                let start = bytes.count
                bytes.append(contentsOf: text.utf8.map { CChar(bitPattern: $0) })
                spans.append(start ..< bytes.count)
            } else {
                spans.append(nil)
            }
        }
        let status: Int32 = bytes.withUnsafeBufferPointer { buffer in
            let args = zip(arguments, spans).map { argument, span -> strata_argument in
                switch argument {
                case .string:
                    let span = span ?? 0 ..< 0
                    return strata_argument(bytes: buffer.baseAddress.map { $0 + span.lowerBound }, length: span.count, integer: 0, kind: 0)
                case .boolean(let on):
                    return strata_argument(bytes: nil, length: 0, integer: on ? 1 : 0, kind: 3)
                }
            }
            return strata_sandbox_call(state, accounting, ref, args, Int32(args.count), results)
        }
        guard status == LUA_OK else { throw failure(status, position: position) }
        return try read()
    }

    /// The string at the top of the stack, or nil.
    private func stringResult() throws(ProjectionError) -> [UInt8]? {
        if strata_lua_isnil(state, -1) != 0 { return nil }
        var length = 0
        guard let bytes = lua_tolstring(state, -1, &length) else { throw .sandbox("expected a string result") }
        return [UInt8](UnsafeRawBufferPointer(start: bytes, count: length))
    }

    /// The error of a failed call, popped from the stack.
    private func failure(_ status: Int32, position: UInt64?) -> ProjectionError {
        let message = popMessage()
        if accounting.pointee.budget_exceeded != 0 {
            return .instructionBudgetExceeded(limit: limits.instructionsPerCall, position: position)
        }
        if status == LUA_ERRMEM {
            return .memoryLimitExceeded(limitBytes: limits.memoryBytes, position: position)
        }
        return .runtime(message: message, position: position)
    }

    private func popMessage() -> String {
        defer { strata_lua_pop(state, 1) }
        if let text = strata_lua_tostring(state, -1) { return Self.userFrames(String(cString: text)) }
        return "(an error object of type \(String(cString: strata_luaL_typename(state, -1))))"
    }

    private static let tracebackMarker = "\nstack traceback:\n"

    static func withoutTraceback(_ message: String) -> String {
        message.range(of: tracebackMarker).map { String(message[..<$0.lowerBound]) } ?? message
    }

    /// Keeps the traceback lines that point into the user's script; the
    /// prelude's and C frames mean nothing to its author.
    static func userFrames(_ message: String) -> String {
        guard let marker = message.range(of: tracebackMarker) else { return message }
        let frames = message[marker.upperBound...].split(separator: "\n").filter {
            !$0.contains("prelude:") && !$0.contains("[C]") && !$0.contains("(...tail calls...)")
        }
        let head = String(message[..<marker.lowerBound])
        return frames.isEmpty ? head : head + tracebackMarker + frames.joined(separator: "\n")
    }

    /// Reads the checkpoint's packed form (see the prelude's `checkpoint`).
    static func unpack(_ bytes: [UInt8]) throws(ProjectionError) -> SandboxOutput {
        var output = SandboxOutput()
        var offset = 0
        func u32() throws(ProjectionError) -> Int {
            guard offset + 4 <= bytes.count else { throw .sandbox("truncated checkpoint") }
            defer { offset += 4 }
            return Int(bytes[offset]) | Int(bytes[offset + 1]) << 8 | Int(bytes[offset + 2]) << 16 | Int(bytes[offset + 3]) << 24
        }
        func chunk() throws(ProjectionError) -> ArraySlice<UInt8> {
            let count = try u32()
            guard offset + count <= bytes.count else { throw .sandbox("truncated checkpoint") }
            defer { offset += count }
            return bytes[offset ..< offset + count]
        }
        func text(_ slice: ArraySlice<UInt8>, _ what: String) throws(ProjectionError) -> String {
            guard let string = String(validating: slice, as: UTF8.self) else {
                throw .invalidOutput("\(what) is not valid UTF-8")
            }
            return string
        }
        for _ in 0 ..< (try u32()) {
            let key = try text(try chunk(), "a partition key")
            output.states.append((key, Array(try chunk())))
        }
        for _ in 0 ..< (try u32()) {
            let stream = try text(try chunk(), "an emitted event's stream")
            let type = try text(try chunk(), "an emitted event's type")
            let json = Array(try chunk())
            guard offset + 8 <= bytes.count else { throw .sandbox("truncated checkpoint") }
            let causedBy = bytes[offset ..< offset + 8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            offset += 8
            output.emitted.append(.init(stream: stream, type: type, json: json, causedBy: causedBy))
        }
        return output
    }
}

/// The Swift side of `load_partition`: calls the loader and keeps the bytes
/// alive until the next call, as the C side expects. Never throws into C: a
/// failure becomes status -1 with the message as the bytes.
private final class PartitionLoaderBox {
    private let loader: LuaSandbox.PartitionLoader
    /// The bytes of the last answer, owned here until the next call.
    private var held = UnsafeMutableRawBufferPointer(start: nil, count: 0)

    init(_ loader: @escaping LuaSandbox.PartitionLoader) { self.loader = loader }

    deinit { held.deallocate() }

    private func hold(_ bytes: [UInt8]) {
        held.deallocate()
        held = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 1)
        bytes.withUnsafeBytes { held.copyMemory(from: $0) }
        held = UnsafeMutableRawBufferPointer(rebasing: held[0 ..< bytes.count])
    }

    func load(key: UnsafePointer<CChar>, length: Int, json: UnsafeMutablePointer<UnsafePointer<CChar>?>?,
              jsonLength: UnsafeMutablePointer<Int>?) -> Int32 {
        let name = String(decoding: UnsafeRawBufferPointer(start: key, count: length), as: UTF8.self)
        let status: Int32
        do {
            guard let stored = try loader(name) else { return 0 }
            hold(stored)
            status = 1
        } catch {
            hold(Array("loading partition '\(name)': \(error)".utf8))
            status = -1
        }
        json?.pointee = UnsafeRawPointer(held.baseAddress)?.assumingMemoryBound(to: CChar.self)
        jsonLength?.pointee = held.count
        return status
    }
}
