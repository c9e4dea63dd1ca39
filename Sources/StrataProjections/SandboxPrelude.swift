/// The trusted Lua that runs first in every projection sandbox. It builds the
/// allow-listed environment the user's script sees (the script never sees the
/// real globals) and returns the host's entry points: `define`, `handle`,
/// `checkpoint`, `state` and `set_emitting`.
///
/// The host passes one argument: `load_partition(key)`, which returns a
/// partition's stored JSON or nil.
enum SandboxPrelude {
    static let source = #"""
local load_partition = ...
local cjson = cjson
local decode, encode = cjson.decode, cjson.encode
cjson.encode_sparse_array(true)  -- sparse arrays become objects instead of an error
local real_load, os_date = load, os.date
local type, pairs, ipairs, error, tostring, setmetatable, rawget, rawset, next =
      type, pairs, ipairs, error, tostring, setmetatable, rawget, rawset, next
local spack, concat = string.pack, table.concat

-- Bytecode can break the VM; nobody needs it.
string.dump = nil

local env = {}
for _, name in ipairs({ "assert", "error", "ipairs", "next", "pairs", "pcall", "rawequal", "rawget",
                        "rawlen", "rawset", "select", "setmetatable", "getmetatable", "tonumber",
                        "tostring", "type", "xpcall", "_VERSION" }) do
  env[name] = _G[name]
end
local function copy(t, drop)
  local c = {}
  for k, v in pairs(t) do
    if not (drop and drop[k]) then c[k] = v end
  end
  return c
end
env.string = copy(string)
env.table = copy(table)
env.utf8 = copy(utf8)
-- No randomness the host does not hand in: a replay must give the same state.
env.math = copy(math, { random = true, randomseed = true })
env.os = {
  date = function(format, time)
    if time == nil then
      error("os.date needs a time: projections have no wall clock (use event.time // 1000000000)", 2)
    end
    format = format or "%c"
    if format:sub(1, 1) ~= "!" then format = "!" .. format end  -- UTC on every server
    return os_date(format, time)
  end,
}
env.cjson = { encode = encode, decode = decode, null = cjson.null }
env.load = function(chunk, name, mode, chunkenv)
  return real_load(chunk, name, "t", chunkenv or env)  -- text only, whatever the mode asked
end
env._G = env

-- Emitted events: stream, type, JSON, flat. Cleared by checkpoint().
local emitted, emitted_count, emitting = {}, 0, true
local current_position = 0  -- the event being handled, recorded with what it emits
env.emit = function(stream, etype, data)
  if type(stream) ~= "string" or stream == "" then error("emit: the stream must be a non-empty string", 2) end
  if type(etype) ~= "string" or etype == "" then error("emit: the event type must be a non-empty string", 2) end
  local json
  if data == nil then
    json = "{}"
  elseif type(data) == "table" then
    json = encode(data)
  else
    error("emit: the data must be a table (it is sent as JSON), not a " .. type(data), 2)
  end
  if emitting then
    emitted[emitted_count + 1] = stream
    emitted[emitted_count + 2] = etype
    emitted[emitted_count + 3] = json
    emitted[emitted_count + 4] = current_position
    emitted_count = emitted_count + 4
  end
end

-- Events: data and metadata are decoded from JSON only when a handler reads them.
local RAW_DATA, RAW_METADATA, RAW_ID = {}, {}, {}
local function is_json(content_type)
  return content_type == nil or content_type == "application/json" or content_type:find("json", 1, true) ~= nil
end
local event_meta = {
  __index = function(e, key)
    if key == "data" or key == "body" then
      local raw = rawget(e, RAW_DATA)
      if raw == nil or not is_json(rawget(e, "content_type")) then return nil end
      local value = decode(raw)
      rawset(e, "data", value)
      rawset(e, "body", value)
      return value
    elseif key == "metadata" then
      local raw = rawget(e, RAW_METADATA)
      if raw == nil then return nil end
      local ok, value = pcall(decode, raw)
      if not ok then value = nil end
      rawset(e, "metadata", value)
      return value
    elseif key == "raw_data" then
      return rawget(e, RAW_DATA)
    elseif key == "id" then
      local raw = rawget(e, RAW_ID)
      if raw == nil then return nil end
      local id = string.format("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", raw:byte(1, 16))
      rawset(e, "id", id)
      return id
    end
    return nil
  end,
}

local when, any, init, partition = nil, nil, nil, nil
local states, dirty, cached = {}, {}, 0
local MAX_CACHED = 10000

local function new_state()
  if init == nil then return {} end
  local s = init()
  if type(s) ~= "table" then
    error("init() returned a " .. type(s) .. "; it must return the initial state table", 0)
  end
  return s
end

-- JSON has one number type; whole numbers come back as integers, so a state
-- reads the same whether or not it went through a checkpoint.
local tointeger = math.tointeger
local function integers(t)
  for k, v in pairs(t) do
    local vt = type(v)
    if vt == "number" then
      local i = tointeger(v)
      if i ~= nil then t[k] = i end
    elseif vt == "table" then
      integers(v)
    end
  end
  return t
end

local function decode_state(json)
  local s = decode(json)
  if type(s) ~= "table" then error("a stored state is not a JSON object", 0) end
  return integers(s)
end

local function state_of(key)
  local s = states[key]
  if s == nil then
    local json = load_partition(key)
    if json ~= nil then s = decode_state(json) else s = new_state() end
    states[key] = s
    cached = cached + 1
  end
  return s
end

local host = {}

function host.define(source, name)
  local chunk, message = real_load(source, "=" .. name, "t", env)
  if chunk == nil then error(message, 0) end
  local def = chunk()
  if type(def) ~= "table" then
    error(name .. ": the script must return a table with source, init, when (see projections/README.md)", 0)
  end
  if type(def.when) ~= "table" then error(name .. ": the table needs 'when', a table of handlers by event type", 0) end
  local handled = {}
  for k, v in pairs(def.when) do
    if type(k) ~= "string" then error(name .. ": when: handler keys must be event types (strings)", 0) end
    if type(v) ~= "function" then error(name .. ": when['" .. k .. "'] must be a function", 0) end
    if k ~= "$any" and k ~= "$init" then handled[#handled + 1] = k end
  end
  init = def.init or def.when["$init"]
  if init ~= nil and type(init) ~= "function" then error(name .. ": init must be a function", 0) end
  partition = def.partition
  if partition ~= nil and type(partition) ~= "function" then error(name .. ": partition must be a function", 0) end
  when = def.when
  any = def.when["$any"]
  if any == nil and #handled == 0 then error(name .. ": 'when' has no handlers", 0) end

  local src = def.source
  if type(src) ~= "table" then
    error(name .. ": the table needs 'source': { all = true }, { streams = {...} }, { category = '...' } or { types = {...} }", 0)
  end
  local out = { handlers = handled, any = any ~= nil, partitioned = partition ~= nil }
  local function strings(list, what)
    if type(list) ~= "table" or #list == 0 then error(name .. ": source." .. what .. " must be a non-empty list of strings", 0) end
    for _, v in ipairs(list) do
      if type(v) ~= "string" or v == "" then error(name .. ": source." .. what .. " must hold non-empty strings", 0) end
    end
    return list
  end
  local kinds = 0
  if src.all ~= nil then
    if src.all ~= true then error(name .. ": source.all must be true", 0) end
    kinds = kinds + 1
  end
  if src.streams ~= nil then out.streams = strings(src.streams, "streams"); kinds = kinds + 1 end
  if src.category ~= nil then
    if type(src.category) ~= "string" or src.category == "" then error(name .. ": source.category must be a non-empty string", 0) end
    out.category = src.category
    kinds = kinds + 1
  end
  if src.types ~= nil then out.types = strings(src.types, "types") end
  if kinds > 1 then error(name .. ": source takes one of all, streams or category (types may be added to any)", 0) end
  if kinds == 0 and out.types == nil then
    error(name .. ": source is empty: use { all = true }, { streams = {...} }, { category = '...' } or { types = {...} }", 0)
  end
  return encode(out)
end

function host.handle(etype, stream, id, revision, position, time, content_type, data, metadata)
  local h = when[etype] or any
  if h == nil then return false end
  current_position = position
  local e = setmetatable({ type = etype, stream = stream, [RAW_ID] = id, revision = revision, position = position,
                           time = time, content_type = content_type,
                           [RAW_DATA] = data, [RAW_METADATA] = metadata }, event_meta)
  local key = ""
  if partition ~= nil then
    key = partition(e)
    if key == nil then return false end
    local kt = type(key)
    if kt == "number" then
      key = tostring(key)
    elseif kt ~= "string" then
      error("partition() returned a " .. kt .. "; return a string, a number, or nil to skip the event", 0)
    end
  end
  local s = state_of(key)
  local r = h(s, e)
  if r ~= nil then
    if type(r) ~= "table" then
      error("the handler for '" .. etype .. "' returned a " .. type(r) .. "; return the state table or nil", 0)
    end
    states[key] = r
  end
  dirty[key] = true
  return true
end

-- Everything changed since the last checkpoint, packed for the host:
-- u32 count, then (key, JSON) pairs; u32 count, then (stream, type, JSON,
-- i64 position of the event that emitted it).
function host.checkpoint()
  local parts, n = {}, 0
  for key in pairs(dirty) do
    n = n + 1
    parts[n + 1] = spack("<s4s4", key, encode(states[key]))
  end
  parts[1] = spack("<I4", n)
  local m = emitted_count // 4
  parts[n + 2] = spack("<I4", m)
  for i = 1, emitted_count, 4 do
    parts[#parts + 1] = spack("<s4s4s4i8", emitted[i], emitted[i + 1], emitted[i + 2], emitted[i + 3])
  end
  dirty, emitted, emitted_count = {}, {}, 0
  if cached > MAX_CACHED then states, cached = {}, 0 end
  return concat(parts)
end

-- One partition's state as JSON (for replays), or nil if it has none.
function host.state(key)
  local s = states[key]
  if s == nil then
    local json = load_partition(key)
    -- An unpartitioned projection always has a state: init()'s, before any event.
    if json == nil and partition == nil then return encode(state_of(key)) end
    return json
  end
  return encode(s)
end

function host.set_emitting(on)
  emitting = on
end

return host
"""#
}
