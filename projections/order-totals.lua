-- Per customer (partitioned by data.customer): orders placed, their total, and
-- cancellations; a cancellation takes its amount back off the total.
-- State per customer: { orders = 3, total = 145, cancelled = 1 }
return {
  source = { category = "order", types = { "OrderPlaced", "OrderCancelled" } },
  init = function() return { orders = 0, total = 0, cancelled = 0 } end,
  partition = function(e) return e.data.customer end,  -- nil (no customer): the event is skipped
  when = {
    OrderPlaced = function(state, e)
      state.orders = state.orders + 1
      state.total = state.total + e.data.amount
    end,
    OrderCancelled = function(state, e)
      state.cancelled = state.cancelled + 1
      state.total = state.total - e.data.amount
    end,
  },
}
