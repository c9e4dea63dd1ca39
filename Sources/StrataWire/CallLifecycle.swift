/// The life of one call (PROTOCOL.md section 3), kept the same way on both
/// ends: the server applies the request it receives and the responses it
/// sends; the client applies the request it sends and the responses it
/// receives. Both therefore agree on what is legal, and a peer that breaks
/// the rules is caught by the same checks that keep the local side honest.
///
/// A value type with no locking of its own: it lives inside whatever owns the
/// call (the server connection's queue, the client call's lock).
public struct CallLifecycle: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// One request, at most one response message, then TRAILERS.
        case unary
        /// One request, any number of response messages within credit, then TRAILERS.
        case serverStreaming
    }

    public enum Phase: Sendable, Equatable {
        /// HEADERS are sent/received; the request MESSAGE has not been.
        case awaitingRequest
        /// The request (with END_STREAM) is in; responses may flow.
        case requested
        /// TRAILERS, CANCEL, a deadline or the connection ended it.
        case ended
    }

    /// The most credit a call can hold; grants beyond it are clamped so a
    /// hostile peer cannot overflow the counter.
    public static let maxCredit = 1 << 30

    public let kind: Kind
    public private(set) var phase: Phase = .awaitingRequest
    /// Response messages the server may still send: 1 for a unary call, the
    /// initial window (then whatever WINDOW_UPDATE adds) for a streaming one.
    public private(set) var credit: Int

    /// `initialWindow` is the window in force on the connection (ignored for unary calls).
    public init(kind: Kind, initialWindow: Int) {
        self.kind = kind
        self.credit = kind == .unary ? 1 : Swift.min(Swift.max(0, initialWindow), Self.maxCredit)
    }

    /// Whether the call has ended.
    public var isEnded: Bool { phase == .ended }

    /// Whether a response message may be sent now.
    public var mayRespond: Bool { phase == .requested && credit > 0 }

    /// The request MESSAGE: received (server) or sent (client).
    public mutating func request(endStream: Bool) throws(CallViolation) {
        switch phase {
        case .ended: throw .callEnded
        case .requested: throw .secondRequest
        case .awaitingRequest:
            guard endStream else { throw .requestWithoutEndStream }
            phase = .requested
        }
    }

    /// One response MESSAGE: about to be sent (server) or received (client).
    /// It spends one unit of credit.
    public mutating func respond() throws(CallViolation) {
        switch phase {
        case .ended: throw .callEnded
        case .awaitingRequest: throw .responseBeforeRequest
        case .requested:
            guard credit > 0 else {
                throw kind == .unary ? .secondUnaryResponse : .responseWithoutCredit
            }
            credit -= 1
        }
    }

    /// WINDOW_UPDATE: granted (client) or received (server). Adds credit to a
    /// streaming call, clamped at `maxCredit`; a unary call's single response
    /// needs none, so a grant on it changes nothing.
    public mutating func grant(_ messages: UInt32) {
        guard kind == .serverStreaming, phase != .ended else { return }
        credit = Swift.min(credit + Int(messages), Self.maxCredit)
    }

    /// TRAILERS, CANCEL, a deadline or the connection's end.
    public mutating func end() {
        phase = .ended
        credit = 0
    }
}

/// A frame sequence the protocol does not allow on one call. The server
/// answers a client's violation by ending that call with INVALID_ARGUMENT;
/// the client treats a server's violation as a connection error.
public enum CallViolation: Error, Sendable, Equatable, CustomStringConvertible {
    /// A second request MESSAGE (every v1 method takes exactly one).
    case secondRequest
    /// The request MESSAGE lacks END_STREAM.
    case requestWithoutEndStream
    /// A response MESSAGE before the request was complete.
    case responseBeforeRequest
    /// A second response MESSAGE on a unary call.
    case secondUnaryResponse
    /// A streaming response MESSAGE with no credit left.
    case responseWithoutCredit
    /// Any frame applied to a call that has ended.
    case callEnded

    public var description: String {
        switch self {
        case .secondRequest: "this method takes one request message"
        case .requestWithoutEndStream: "the request MESSAGE must carry END_STREAM (methods take one request)"
        case .responseBeforeRequest: "a response MESSAGE arrived before the request was complete"
        case .secondUnaryResponse: "a second response MESSAGE on a unary call"
        case .responseWithoutCredit: "a response MESSAGE beyond the granted credit"
        case .callEnded: "a frame for a call that has ended"
        }
    }
}
