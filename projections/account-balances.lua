-- The balance of every account: one partition per stream of the "account"
-- category (query one with `strata projection state account-balances --partition account-1`).
-- State per account: { balance = 425, transactions = 4 }
local function apply(sign)
  return function(state, e)
    state.balance = state.balance + sign * e.data.amount
    state.transactions = state.transactions + 1
  end
end

return {
  source = { category = "account" },
  init = function() return { balance = 0, transactions = 0 } end,
  partition = function(e) return e.stream end,
  when = {
    Deposited = apply(1),
    Withdrawn = apply(-1),
  },
}
