import StrataStorage

/// Why a projection could not be loaded or stopped running.
public enum ProjectionError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The script does not compile or its top level fails; the message has
    /// the script name and line number ("counts.lua:3: ...").
    case invalidScript(String)
    /// A handler, `init` or `partition` raised an error or returned something
    /// unusable while handling the event at `position`.
    case runtime(message: String, position: UInt64?)
    /// A call used more instructions than allowed (an endless loop, usually).
    case instructionBudgetExceeded(limit: Int, position: UInt64?)
    /// The projection's Lua memory would pass its cap.
    case memoryLimitExceeded(limitBytes: Int, position: UInt64?)
    /// An emitted event or partition key the store cannot take.
    case invalidOutput(String)
    /// The store failed underneath the projection.
    case storage(StorageError)
    /// The sandbox itself could not be set up.
    case sandbox(String)
    /// The tenant already has `limit` projections (`projections.max_per_tenant`).
    case tooManyProjections(limit: Int)

    public var description: String {
        switch self {
        case .invalidScript(let message): message
        case let .runtime(message, position): Self.at(position) + message
        case let .instructionBudgetExceeded(limit, position):
            Self.at(position) + "instruction budget exceeded: more than \(limit) Lua instructions for one event"
        case let .memoryLimitExceeded(limit, position):
            Self.at(position) + "memory limit exceeded: the projection's Lua state may use \(limit) bytes"
        case .invalidOutput(let message): message
        case .storage(let error): "storage: \(error)"
        case .sandbox(let message): "sandbox: \(message)"
        case .tooManyProjections(let limit): "the tenant already has \(limit) projections (projections.max_per_tenant); delete one first"
        }
    }

    /// The position of the event being handled when it failed, if any.
    public var position: UInt64? {
        switch self {
        case let .runtime(_, position), let .instructionBudgetExceeded(_, position),
             let .memoryLimitExceeded(_, position): position
        default: nil
        }
    }

    private static func at(_ position: UInt64?) -> String {
        position.map { "at position \($0): " } ?? ""
    }
}
