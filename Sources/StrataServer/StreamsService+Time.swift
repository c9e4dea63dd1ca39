import StrataProto
import StrataStorage
import StrataWire

/// Reads bounded by commit time, and time → position.
extension StreamsService {
    /// A forwards read of the events recorded in `request.recorded`, from a
    /// stream (history included: a stream deleted later is read as it was) or
    /// from `$all` (with its filters).
    func timeRangeRead(_ request: Strata_V1_ReadRequest, _ context: CallContext) throws(RPCError) -> any ServerStreamSource {
        guard !request.backwards else {
            throw RPCError.invalidArgument(field: "backwards", reason: "a time-range read runs forwards")
        }
        guard request.from == nil else {
            throw RPCError.invalidArgument(field: "from", reason: "a time-range read starts at its range; leave 'from' unset")
        }
        let range = request.recorded
        guard range.from <= range.to else {
            throw RPCError.invalidArgument(field: "recorded", reason: "from (\(range.from)) is after to (\(range.to))")
        }
        let limit = request.maxCount == 0 ? UInt64.max : request.maxCount
        let lease = try lease(context)
        let store = lease.store
        let pageSize = readPageSize
        if request.stream == "$all" {
            let positions: (low: UInt64, high: UInt64)
            do {
                let found = try store.positions(recordedFrom: range.from, to: range.to)
                positions = (found.lower, found.upper)
            } catch {
                lease.release()
                throw RPCError(error)
            }
            let filter = EventFilter(streamPrefixes: request.streamPrefixes, eventTypes: request.eventTypes)
            var next: UInt64? = positions.low <= positions.high ? positions.low : nil
            return PagedReadSource(lease: lease, limit: limit, eventsPerMessage: readPageSize, byteBudget: byteBudget) { count throws(RPCError) in
                guard let from = next else { return ([], true) }
                do {
                    // Bounded scans, as in plain $all reads: a filter that matches
                    // little must not walk the whole range in one transaction.
                    let slice = try store.readAll(positions: from ... positions.high, maxCount: count, filter: filter,
                                                  scanLimit: pageSize * 16)
                    next = slice.nextPosition
                    return (slice.events, next == nil)
                } catch {
                    throw RPCError(any: error)
                }
            }
        }
        guard request.streamPrefixes.isEmpty && request.eventTypes.isEmpty else {
            lease.release()
            throw RPCError.invalidArgument(field: "stream_prefixes", reason: "filters apply to $all reads only")
        }
        let stream = request.stream
        // Fail a stream that never existed before anything is sent.
        do {
            _ = try store.readStream(stream, recordedFrom: range.from, to: range.to, maxCount: 0)
        } catch {
            lease.release()
            throw RPCError(error)
        }
        var next: UInt64? = 0
        return PagedReadSource(lease: lease, limit: limit, eventsPerMessage: readPageSize, byteBudget: byteBudget) { count throws(RPCError) in
            guard let from = next else { return ([], true) }
            do {
                let slice = try store.readStream(stream, recordedFrom: range.from, to: range.to, maxCount: count, startingAt: from)
                next = slice.nextRevision
                return (slice.events, next == nil)
            } catch {
                throw RPCError(any: error)
            }
        }
    }

    func positionAt(_ request: Strata_V1_GetPositionAtRequest, _ context: CallContext) throws -> Strata_V1_GetPositionAtResponse {
        let lease = try lease(context)
        defer { lease.release() }
        var response = Strata_V1_GetPositionAtResponse()
        let position = try lease.store.position(at: request.time)
        response.position = position
        if position > 0 {
            response.recordedAt = try lease.store.readAll(from: .position(position), maxCount: 1).events.first?.recordedAt ?? 0
        }
        return response
    }
}
