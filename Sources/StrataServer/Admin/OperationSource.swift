import Dispatch
import Foundation
import StrataProto
import StrataStorage
import StrataSupport
import StrataWire

/// A long admin operation (backup, restore, verify, compact) served as a
/// server stream: the work runs on a Dispatch queue and posts progress;
/// the connection pulls progress messages and, last, the result.
///
/// Unsent progress is coalesced (only the newest is kept), so a slow
/// client costs one message of memory. When the call ends early (the
/// client cancels, the deadline passes, the connection drops) the source is
/// released and the work's next progress report returns false, which
/// cancels the operation.
final class OperationSource: ServerStreamSource {
    /// Shared by the source (connection queue) and the work (Dispatch),
    /// owned by the `Locked` that holds it.
    private struct Shared {
        var pending: [[UInt8]] = []
        var lastIsProgress = false
        var finished = false
        var failure: RPCError?
        var cancelled = false
        var wake: (@Sendable () -> Void)?
    }

    private let shared = Locked(Shared())
    private let work: @Sendable (_ progress: ProgressHandler) throws -> Strata_V1_OperationUpdate

    init(_ work: @escaping @Sendable (_ progress: ProgressHandler) throws -> Strata_V1_OperationUpdate) {
        self.work = work
    }

    deinit {
        shared.withLock { $0.cancelled = true }
    }

    func start(wake: @escaping @Sendable () -> Void) {
        let shared = self.shared
        let work = self.work
        shared.withLock { $0.wake = wake }
        DispatchQueue.global().async {
            let report: ProgressHandler = { progress in
                var message = Strata_V1_OperationUpdate()
                message.progress = .with {
                    $0.phase = progress.phase
                    $0.done = progress.done
                    $0.total = progress.total
                    $0.unit = progress.unit
                }
                let bytes: [UInt8] = (try? message.serializedBytes()) ?? []
                let (go, wake) = shared.withLock { shared -> (Bool, (@Sendable () -> Void)?) in
                    if shared.lastIsProgress, !shared.pending.isEmpty { shared.pending.removeLast() }
                    shared.pending.append(bytes)
                    shared.lastIsProgress = true
                    return (!shared.cancelled, shared.wake)
                }
                wake?()
                return go
            }
            let outcome: Result<[UInt8], RPCError>
            do {
                outcome = .success(try work(report).serializedBytes())
            } catch {
                outcome = .failure(RPCError(any: error))
            }
            let wake = shared.withLock { shared -> (@Sendable () -> Void)? in
                switch outcome {
                case .success(let bytes):
                    shared.pending.append(bytes)
                    shared.lastIsProgress = false
                case .failure(let error):
                    shared.failure = error
                }
                shared.finished = true
                return shared.wake
            }
            wake?()
        }
    }

    func next(max: Int) throws(RPCError) -> (messages: [[UInt8]], finished: Bool) {
        let (messages, finished, failure) = shared.withLock { shared -> ([[UInt8]], Bool, RPCError?) in
            let take = Array(shared.pending.prefix(max))
            shared.pending.removeFirst(take.count)
            if shared.pending.isEmpty { shared.lastIsProgress = false }
            let done = shared.finished && shared.pending.isEmpty
            return (take, done && shared.failure == nil, done ? shared.failure : nil)
        }
        if messages.isEmpty, let failure { throw failure }
        return (messages, finished)
    }
}
