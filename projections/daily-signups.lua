-- Sign-ups per UTC day, from the event's own data.registered_at (seconds since
-- the epoch): { total = 7, days = { ["2024-01-01"] = 3, ... } }. To count by the
-- time the event was recorded instead: os.date("%Y-%m-%d", e.time // 1000000000).
return {
  source = { category = "user", types = { "UserRegistered" } },
  init = function() return { total = 0, days = {} } end,
  when = {
    UserRegistered = function(state, e)
      local day = os.date("!%Y-%m-%d", e.data.registered_at)
      state.days[day] = (state.days[day] or 0) + 1
      state.total = state.total + 1
    end,
  },
}
