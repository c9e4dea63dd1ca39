import StrataProto
import StrataStorage
import StrataWire

extension StreamsService {
    /// Opens a subscription: validates the request and places the cursor.
    func subscribe(_ request: Strata_V1_SubscribeRequest, _ context: CallContext) throws(RPCError) -> any ServerStreamSource {
        let filters = EventFilter(streamPrefixes: request.streamPrefixes, eventTypes: request.eventTypes)
        let target: SubscriptionTarget
        switch request.target {
        case .none:
            throw RPCError.invalidArgument(field: "target", reason: "name a stream, a category or all")
        case .stream(let name):
            guard filters.isEmpty else {
                throw RPCError.invalidArgument(field: "stream_prefixes", reason: "filters apply to category and $all subscriptions only")
            }
            guard !name.isEmpty, name != "$all" else {
                throw RPCError.invalidArgument(field: "target.stream", reason: name.isEmpty ? "empty" : "use target.all for $all")
            }
            target = .stream(name)
        case .category(let category):
            guard !category.isEmpty, !category.contains("-") else {
                throw RPCError.invalidArgument(field: "target.category",
                                               reason: "a category is the part of a stream name before its first '-', so it is non-empty and has no '-'")
            }
            // A category is $all narrowed to "<category>-…"; the request's own
            // prefixes narrow it further (they must lie inside the category).
            let categoryPrefix = category + "-"
            let prefixes = request.streamPrefixes.isEmpty
                ? [categoryPrefix]
                : request.streamPrefixes.filter { $0.hasPrefix(categoryPrefix) || categoryPrefix.hasPrefix($0) }
                    .map { $0.count > categoryPrefix.count ? $0 : categoryPrefix }
            guard !prefixes.isEmpty else {
                throw RPCError.invalidArgument(field: "stream_prefixes", reason: "no prefix lies inside category '\(category)'")
            }
            target = .all(EventFilter(streamPrefixes: prefixes, eventTypes: request.eventTypes))
        case .all:
            target = .all(filters)
        }
        let lease = try lease(context)
        let cursor: UInt64
        do throws(RPCError) {
            cursor = try Self.startCursor(request.from, target: target, store: lease.store)
        } catch {
            lease.release()
            throw error
        }
        let interval = request.checkpointInterval == 0 ? subscriptions.checkpointInterval : Int(request.checkpointInterval)
        return SubscriptionSource(lease: lease, target: target, cursor: cursor, pageSize: readPageSize, byteBudget: byteBudget,
                                  checkpointInterval: interval, limits: subscriptions,
                                  registry: metrics?.subscriptions)
    }

    /// The first position (or revision, for a stream) to deliver.
    private static func startCursor(_ from: Strata_V1_SubscribeRequest.OneOf_From?, target: SubscriptionTarget,
                                    store: EventStore) throws(RPCError) -> UInt64 {
        do {
            switch (from, target) {
            case (.none, .stream), (.start, .stream): return 0
            case (.none, .all), (.start, .all): return 1
            case (.afterRevision(let revision), .stream):
                guard revision < UInt64.max else { throw RPCError.invalidArgument(field: "from.after_revision", reason: "out of range") }
                return revision + 1
            case (.afterPosition(let position), .all):
                guard position < UInt64.max else { throw RPCError.invalidArgument(field: "from.after_position", reason: "out of range") }
                return position + 1
            case (.end, .all):
                return try store.headPosition() + 1
            case (.end, .stream(let name)):
                do throws(StorageError) {
                    let info = try store.streamInfo(name)
                    if info.isDeleted { throw StorageError.streamDeleted(stream: name) }
                    return info.lastRevision + 1
                } catch .streamNotFound {
                    return 0
                }
            case (.afterPosition, .stream):
                throw RPCError.invalidArgument(field: "from", reason: "a stream subscription starts after a revision, not a position")
            case (.afterRevision, .all):
                throw RPCError.invalidArgument(field: "from", reason: "category and $all subscriptions start after a position, not a revision")
            }
        } catch let error as RPCError {
            throw error
        } catch let error as StorageError {
            throw RPCError(error)
        } catch {
            throw RPCError(.internal, "\(error)")
        }
    }
}
