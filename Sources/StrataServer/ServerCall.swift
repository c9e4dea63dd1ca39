import Dispatch
import StrataWire

/// One call on a connection. Confined to the connection's queue.
final class ServerCall {
    enum State {
        /// Headers accepted; waiting for the request message.
        case awaitingRequest
        /// A unary handler is running; its response hops back to the queue.
        case running
        /// A server-streaming call sending within its credit.
        case streaming(any ServerStreamSource)
        /// Finished, cancelled or past its deadline.
        case ended
    }

    let id: UInt32
    let handler: MethodHandler
    let context: CallContext
    var state: State = .awaitingRequest
    /// Messages the client has granted for a streaming response.
    var credit: Int

    init(id: UInt32, handler: MethodHandler, context: CallContext, credit: Int) {
        self.id = id
        self.handler = handler
        self.context = context
        self.credit = credit
    }

    /// Drops the stream source (releasing its tenant lease).
    func end() {
        state = .ended
    }
}
