import Foundation
import StrataStorage
import StrataSupport
import Synchronization

/// Runs one projection: catches up from its checkpoint, then follows live
/// commits. Events are handled in batches; state, checkpoint and emitted
/// events are committed together (one LMDB transaction) every N events or T
/// milliseconds, so after a crash the projection resumes from a checkpoint
/// that matches its state exactly: no event counts twice or not at all.
///
/// Ownership: everything below `queue` is touched only on `queue` (a serial
/// queue per projection; the Lua state lives there too). `published` is a
/// `Locked` so status reads never wait for a batch. `wakeScheduled` is atomic.
final class ProjectionRunner: @unchecked Sendable {
    let name: String
    private let store: EventStore
    private let options: ProjectionOptions
    private let queue: DispatchQueue
    private let published: Locked<ProjectionStatus>
    private let wakeScheduled = Atomic<Bool>(false)

    // Queue-owned.
    private var active = false
    private var sandbox: LuaSandbox?
    private var definition: ProjectionDefinition?
    private var generation: UInt64 = 0
    /// Committed checkpoint, and progress beyond it not yet committed.
    private var committed = ProjectionCheckpoint(generation: 0)
    private var position: UInt64 = 0
    private var handled: UInt64 = 0
    private var emitted: UInt64 = 0
    private var handledSinceCommit = 0
    private var handledSinceSnapshot = 0
    private var oldestUncommitted: ContinuousClock.Instant?
    private var observation: CommitObservation?
    /// Events an emit of this projection wrote carry this metadata prefix;
    /// the projection skips them so it never feeds on its own output.
    private let ownMetadataPrefix: [UInt8]
    private var rate = RateMeter()

    init(name: String, store: EventStore, options: ProjectionOptions) {
        self.name = name
        self.store = store
        self.options = options
        queue = DispatchQueue(label: "strata.projection.\(store.tenant).\(name)")
        published = Locked(ProjectionStatus(name: name, state: .stopped, checkpoint: 0, position: 0, headPosition: 0,
                                           eventsHandled: 0, eventsEmitted: 0, eventsPerSecond: 0, partitioned: false,
                                           generation: 0, lastCommitAt: 0))
        ownMetadataPrefix = Self.ownOutputPrefix(name)
    }

    var status: ProjectionStatus { published.withLock { $0 } }

    /// Signalled whenever the published status changes.
    private let progress = NSCondition()

    /// Waits until the committed checkpoint reaches `position`, or the
    /// projection stops running, or `timeout` passes; returns the status then.
    func waitForCheckpoint(_ position: UInt64, timeout: Duration) -> ProjectionStatus {
        let deadline = Date(timeIntervalSinceNow: timeout.seconds)
        progress.lock()
        defer { progress.unlock() }
        while true {
            let current = status
            if current.checkpoint >= position || current.state == .faulted || current.state == .paused { return current }
            if !progress.wait(until: deadline) { return status }
        }
    }

    private func signalProgress() {
        progress.lock()
        progress.broadcast()
        progress.unlock()
    }

    /// The metadata written with this projection's emitted events.
    static func emittedMetadata(projection: String, causedBy position: UInt64) -> [UInt8] {
        Array(#"{"$projection":"\#(projection)","$causedBy":\#(position)}"#.utf8)
    }

    /// How that metadata starts: what marks an event as this projection's output.
    static func ownOutputPrefix(_ projection: String) -> [UInt8] {
        Array(#"{"$projection":"\#(projection)""#.utf8)
    }

    static func isOutput(_ metadata: UnsafeRawBufferPointer, prefix: [UInt8]) -> Bool {
        metadata.count >= prefix.count && metadata.starts(with: prefix)
    }

    // MARK: - Commands (any thread; work runs on the queue)

    /// (Re)starts from the stored definition and checkpoint. Returns once the
    /// status says where it stands; batches then run on the queue.
    func start() { queue.sync { self.load() } }

    /// Commits what is pending and stops; waits until it has.
    func stop(finalState: ProjectionStatus.State = .stopped) {
        queue.sync {
            if active, sandbox != nil, handledSinceCommit > 0 || position > committed.position { commit() }
            halt(finalState)
        }
    }

    /// Runs `body` on the queue after stopping, then restarts from storage.
    func restart(after body: @escaping @Sendable () throws(StorageError) -> Void) throws(StorageError) {
        let result: Result<Void, StorageError> = queue.sync {
            halt(.stopped)
            do throws(StorageError) { try body() } catch { return .failure(error) }
            return .success(())
        }
        start()
        try result.get()
    }

    // MARK: - Queue

    private func load() {
        halt(nil)
        let loaded: (record: ProjectionRecord, checkpoint: ProjectionCheckpoint)?
        do {
            loaded = try store.projection(name)
        } catch {
            publish(state: .faulted, fault: "loading: \(error)", faultPosition: nil)
            return
        }
        guard let (record, checkpoint) = loaded else {  // deleted
            publish(state: .stopped)
            return
        }
        generation = record.generation
        committed = checkpoint
        position = checkpoint.position
        handled = checkpoint.eventsHandled
        emitted = checkpoint.eventsEmitted
        handledSinceCommit = 0
        handledSinceSnapshot = 0
        oldestUncommitted = nil
        switch record.state {
        case .paused:
            publish(state: .paused)
            return
        case .faulted:
            publish(state: .faulted, fault: record.fault, faultPosition: record.faultPosition)
            return
        case .running:
            break
        }
        do {
            let sandbox = try LuaSandbox(limits: options.sandbox) { [store, name] partition throws(ProjectionError) in
                do throws(StorageError) {
                    return try store.storedPartitionState(name, partition: partition)
                } catch {
                    throw .storage(error)
                }
            }
            definition = try sandbox.define(script: record.script, name: name + ".lua")
            self.sandbox = sandbox
        } catch {
            fault(error)
            return
        }
        active = true
        publish(state: .running)
        let observation = store.commits.observe { [weak self] _ in self?.wake() }
        self.observation = observation
        wake()
    }

    /// Stops handling events; publishes `state` unless nil (a fault
    /// publishes its own).
    private func halt(_ state: ProjectionStatus.State?) {
        observation?.cancel()
        observation = nil
        active = false
        sandbox = nil
        definition = nil
        if let state, state != .faulted { publish(state: state) }
    }

    /// A commit happened: schedule one step unless one is already queued.
    private func wake() {
        if !wakeScheduled.exchange(true, ordering: .acquiringAndReleasing) {
            queue.async { self.step() }
        }
    }

    /// Handles one batch; schedules the next while behind.
    private func step() {
        wakeScheduled.store(false, ordering: .releasing)
        guard active, let sandbox, let definition else { return }
        let slice: AllSlice
        do {
            slice = try store.readAll(from: .position(position + 1), maxCount: options.batchSize, filter: definition.filter,
                                      scanLimit: options.batchSize * 16)
        } catch {
            fault(.storage(error))
            return
        }
        for event in slice.events {
            do {
                // Untyped here: a typed-throws closure through this rethrows
                // function crashes the 6.3 compiler.
                let took = try event.withFieldBytes { fields -> Bool in
                    guard definition.accepts(stream: fields.stream), !Self.isOutput(fields.metadata, prefix: ownMetadataPrefix) else { return false }
                    return try sandbox.handle(fields)
                }
                if took {
                    handled += 1
                    handledSinceCommit += 1
                    handledSinceSnapshot += 1
                    if oldestUncommitted == nil { oldestUncommitted = .now }
                }
            } catch {
                fault(error as? ProjectionError ?? .sandbox("\(error)"))
                return
            }
            position = event.position
        }
        let caughtUp = slice.nextPosition == nil
        position = max(position, caughtUp ? slice.headPosition : (slice.nextPosition ?? 1) - 1)
        rate.record(handled: handled)
        publish(state: .running, head: slice.headPosition)

        let due = handledSinceCommit >= options.checkpointEvents
            || (oldestUncommitted.map { ContinuousClock.now - $0 >= options.checkpointInterval } ?? false)
        let scannedALot = position - committed.position >= UInt64(options.checkpointEvents * 16)
        if due || (caughtUp && position > committed.position) || scannedALot {
            guard commit() else { return }
        }
        if !caughtUp { queue.async { self.step() } }
        // Caught up: the commit observer calls wake() after the next commit.
    }


    /// Commits state, checkpoint and emitted events; false if it faulted.
    @discardableResult
    private func commit() -> Bool {
        guard let sandbox, let definition else { return false }
        let output: SandboxOutput
        do {
            output = try sandbox.checkpoint()
        } catch {
            fault(error)
            return false
        }
        if output.emitted.count > options.maxEmittedPerCommit {
            fault(.invalidOutput("emitted \(output.emitted.count) events before one checkpoint; the limit is \(options.maxEmittedPerCommit)"))
            return false
        }
        // In emission order: consecutive events to one stream share a write.
        var writes: [StreamWrite] = []
        for event in output.emitted {
            let proposed = ProposedEvent(id: UUID.timeOrdered(), type: event.type, data: Data(event.json),
                                         metadata: Data(Self.emittedMetadata(projection: name, causedBy: event.causedBy)))
            if writes.last?.stream == event.stream {
                writes[writes.count - 1].events.append(proposed)
            } else {
                writes.append(StreamWrite(stream: event.stream, expected: .any, events: [proposed]))
            }
        }
        var snapshot: [UInt8]?
        if !definition.partitioned, options.snapshotEvents > 0, handledSinceSnapshot >= options.snapshotEvents {
            do {
                snapshot = try sandbox.stateJSON(partition: "")
            } catch {
                fault(error)
                return false
            }
        }
        let checkpoint = ProjectionCheckpoint(position: position, eventsHandled: handled,
                                              eventsEmitted: emitted + UInt64(output.emitted.count), generation: generation)
        let commit = ProjectionCommit(name: name, generation: generation, expectedPosition: committed.position,
                                      checkpoint: checkpoint, states: output.states, emitted: writes, snapshot: snapshot,
                                      keepSnapshots: options.keepSnapshots)
        do {
            try store.commitProjection(commit)
        } catch .projectionConflict, .projectionNotFound {
            // Reset, updated or deleted meanwhile: start over from what is stored.
            halt(nil)
            queue.async { self.load() }
            return false
        } catch {
            fault(.storage(error))
            return false
        }
        committed = checkpoint
        emitted = checkpoint.eventsEmitted
        handledSinceCommit = 0
        if snapshot != nil { handledSinceSnapshot = 0 }
        oldestUncommitted = nil
        published.withLock {
            $0.checkpoint = checkpoint.position
            $0.eventsEmitted = emitted
            $0.lastCommitAt = UnixNanoseconds.now
        }
        signalProgress()
        return true
    }

    /// Stops the projection and records why; what was not committed is
    /// dropped (the state may be half-changed) and redone after a resume.
    private func fault(_ error: ProjectionError) {
        let position = error.position ?? self.position
        let message = error.description
        halt(.faulted)
        publish(state: .faulted, fault: message, faultPosition: position)
        do {
            try store.changeProjection(.setState(name: name, state: .faulted, fault: message, faultPosition: position,
                                                 generation: generation))
        } catch {
            // Reset or deleted meanwhile: the next load sorts it out.
        }
    }

    private func publish(state: ProjectionStatus.State, fault: String? = nil, faultPosition: UInt64? = nil,
                         head: UInt64? = nil) {
        let snapshot = (position, committed.position, handled, emitted, generation, definition?.partitioned ?? false,
                        rate.perSecond)
        published.withLock { status in
            status.state = state
            status.fault = fault
            status.faultPosition = faultPosition
            status.position = snapshot.0
            status.checkpoint = snapshot.1
            status.eventsHandled = snapshot.2
            status.eventsEmitted = snapshot.3
            status.generation = snapshot.4
            if definition != nil { status.partitioned = snapshot.5 }
            status.eventsPerSecond = state == .running ? snapshot.6 : 0
            if let head { status.headPosition = head } else if let stored = try? store.headPosition() {
                status.headPosition = stored
            }
        }
        signalProgress()
    }
}

/// Events per second over a sliding window of about five seconds.
struct RateMeter {
    private var samples: [(time: ContinuousClock.Instant, handled: UInt64)] = []

    mutating func record(handled: UInt64) {
        let now = ContinuousClock.now
        if let last = samples.last, now - last.time < .milliseconds(250) { return }
        samples.append((now, handled))
        samples.removeAll { now - $0.time > .seconds(5) }
    }

    var perSecond: Double {
        guard let first = samples.first, let last = samples.last, last.time > first.time else { return 0 }
        return Double(last.handled - first.handled) / (last.time - first.time).seconds
    }
}

