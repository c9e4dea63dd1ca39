-- Counts every event of the tenant: the total, and how many of each type.
-- State: { total = 12, types = { Deposited = 3, Withdrawn = 2, ... } }
-- (With source all it also counts events that other projections emit.)
return {
  source = { all = true },
  init = function() return { total = 0, types = {} } end,
  when = {
    ["$any"] = function(state, e)
      state.total = state.total + 1
      state.types[e.type] = (state.types[e.type] or 0) + 1
    end,
  },
}
