/// Which end of a connection is receiving.
public enum ConnectionRole: Sendable {
    case server
    case client
}

/// What to do with a received frame (PROTOCOL.md sections 2, 3 and 6).
public enum FrameVerdict: Sendable, Equatable {
    /// Process it.
    case accept
    /// A frame for a call that has already ended (a race with a deadline, a
    /// cancel or trailers): drop it silently.
    case ignore
    /// The peer broke the protocol: send GOAWAY with this code and reason, then close.
    case connectionError(StatusCode, String)
}

/// The protocol's rules for frames arriving on a connection, shared by the
/// server and the client so both judge a frame sequence the same way. A pure
/// function of the frame and the little state it needs: whether the handshake
/// is complete, whether the frame's call is open, and the highest call id
/// opened so far (by the client, on either side).
public enum FrameRules {
    public static func check(_ frame: Frame, role: ConnectionRole, handshakeComplete: Bool,
                             callIsOpen: Bool, lastCallID: UInt32) -> FrameVerdict {
        if !handshakeComplete {
            guard frame.type == .settings else {
                return .connectionError(.invalidArgument, "the first frame after the preface must be SETTINGS, not \(frame.type)")
            }
            guard !frame.flags.contains(.ack) else {
                return .connectionError(.invalidArgument, "the first frame after the preface must be the peer's own SETTINGS, not an ACK")
            }
            guard frame.callID == 0 else {
                return .connectionError(.invalidArgument, "SETTINGS must use call id 0, not \(frame.callID)")
            }
        }
        switch frame.type {
        case .settings, .goAway:
            return frame.callID == 0 ? .accept : .connectionError(.invalidArgument, "\(frame.type) must use call id 0")
        case .ping:
            guard frame.callID == 0, frame.payload.count == 8 else {
                return .connectionError(.invalidArgument, "PING must use call id 0 and carry 8 bytes")
            }
            return .accept
        case .headers:
            guard role == .server else { return .connectionError(.invalidArgument, "servers do not send HEADERS") }
            guard frame.callID != 0, frame.callID > lastCallID else {
                return .connectionError(.invalidArgument,
                                        "call id \(frame.callID) is not greater than the previous one (\(lastCallID))")
            }
            return .accept
        case .trailers:
            guard role == .client else { return .connectionError(.invalidArgument, "clients do not send TRAILERS") }
            return callFrame(frame, callIsOpen: callIsOpen, lastCallID: lastCallID)
        case .windowUpdate, .cancel:
            guard role == .server else { return .connectionError(.invalidArgument, "servers do not send \(frame.type)") }
            if frame.type == .cancel && !callIsOpen { return .ignore }
            return callFrame(frame, callIsOpen: callIsOpen, lastCallID: lastCallID)
        case .message:
            return callFrame(frame, callIsOpen: callIsOpen, lastCallID: lastCallID)
        }
    }

    /// A frame that belongs to a call: accepted while the call is open,
    /// ignored after it ended, an error for a call never opened.
    private static func callFrame(_ frame: Frame, callIsOpen: Bool, lastCallID: UInt32) -> FrameVerdict {
        if callIsOpen { return .accept }
        if frame.callID == 0 || frame.callID > lastCallID {
            return .connectionError(.invalidArgument, "\(frame.type) for call \(frame.callID), which was never opened")
        }
        return .ignore
    }
}

extension FrameType: CustomStringConvertible {
    public var description: String {
        switch self {
        case .settings: "SETTINGS"
        case .headers: "HEADERS"
        case .message: "MESSAGE"
        case .trailers: "TRAILERS"
        case .cancel: "CANCEL"
        case .windowUpdate: "WINDOW_UPDATE"
        case .ping: "PING"
        case .goAway: "GOAWAY"
        }
    }
}
