-- For every withdrawal of 1000 or more, emits a LargeWithdrawal event to the
-- stream "alerts-<account stream>", and counts the alerts: { alerts = 5 }.
-- The alerts go to the "alerts" category, which this projection does not read.
local THRESHOLD = 1000

return {
  source = { category = "account", types = { "Withdrawn" } },
  init = function() return { alerts = 0 } end,
  when = {
    Withdrawn = function(state, e)
      local amount = e.data.amount
      if amount >= THRESHOLD then
        emit("alerts-" .. e.stream, "LargeWithdrawal", { account = e.stream, amount = amount, position = e.position })
        state.alerts = state.alerts + 1
      end
    end,
  },
}
