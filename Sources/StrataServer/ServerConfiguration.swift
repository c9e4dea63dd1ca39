import StrataWire

/// Everything the server needs to run. Limits are configured numbers with
/// documented defaults (PROTOCOL.md, "Limits").
public struct ServerConfiguration: Sendable {
    public var host: String = "127.0.0.1"
    /// 0 picks a free port (tests).
    public var port: UInt16 = 7070
    /// The most open client connections; more are answered with GOAWAY
    /// RESOURCE_EXHAUSTED and closed.
    public var maxConnections: Int = 1024
    /// The most calls one connection may have open at once.
    public var maxConcurrentCallsPerConnection: UInt32 = ProtocolDefaults.maxConcurrentCalls
    /// The largest frame payload the server accepts.
    public var maxFrameSize: UInt32 = ProtocolDefaults.maxFrameSize
    /// Messages a server-streaming call may send before the client grants more.
    public var initialWindowMessages: UInt32 = ProtocolDefaults.initialWindowMessages
    /// A connection with no open call and no frame for this long is closed.
    public var idleTimeout: Duration = .seconds(300)
    /// A connection must send its preface and SETTINGS within this time.
    public var handshakeTimeout: Duration = .seconds(10)
    /// Bytes queued for one connection's socket above which the server stops
    /// producing streamed responses for it (and reading its requests) until
    /// the client catches up. Bounds memory per slow client.
    public var maxWriteBufferBytes: Int = 4 << 20
    /// How long a graceful shutdown waits for in-flight calls.
    public var shutdownGracePeriod: Duration = .seconds(10)
    /// Events per storage read while serving Read (one read transaction each).
    public var readPageSize: Int = 512
    /// Subscription checkpoints and the lag at which a subscriber is ended.
    public var subscriptions = SubscriptionLimits()
    /// Development mode: the first start creates a development tenant and
    /// key, and a missing admin key is made up and printed. Keys are checked
    /// in both modes.
    public var developmentMode: Bool = true
    /// Where `GET /metrics`, `/health` and `/ready` are served (plain HTTP).
    public var metricsHost: String = "127.0.0.1"
    /// The metrics port; 0 picks a free one; nil serves no metrics endpoint.
    public var metricsPort: UInt16? = nil

    public init() {}
}
