-- codectx daemon client for Neovim: length-prefixed msgpack frames over the daemon's Unix
-- socket (docs/protocol.md). Works with Neovim >= 0.7 (vim.loop, vim.mpack; no vim.uv).
local uv = vim.loop
local M = {}

local PROTOCOL_VERSION = 1
local next_id = 0

local function exists(path)
  return path ~= nil and path ~= '' and uv.fs_stat(path) ~= nil
end

--- The daemon socket, resolved like every codectx client does (docs/protocol.md).
function M.socket_path()
  local env = vim.env
  if env.CODECTX_SOCKET and env.CODECTX_SOCKET ~= '' then
    return env.CODECTX_SOCKET
  end
  if env.CODECTX_RUNTIME_DIR and env.CODECTX_RUNTIME_DIR ~= '' then
    return env.CODECTX_RUNTIME_DIR .. '/codectxd.sock'
  end
  if exists(env.XDG_RUNTIME_DIR) then
    return env.XDG_RUNTIME_DIR .. '/codectx/codectxd.sock'
  end
  local uid = uv.getuid()
  if uv.os_uname().sysname == 'Darwin' then
    return uv.os_homedir() .. '/Library/Caches/TemporaryItems/codectx/codectxd.sock'
  end
  if exists('/run/user/' .. uid) then
    return '/run/user/' .. uid .. '/codectx/codectxd.sock'
  end
  local tmp = (env.TMPDIR and env.TMPDIR ~= '') and env.TMPDIR or '/tmp'
  return tmp .. '/codectx-' .. uid .. '/codectxd.sock'
end

local function be32(n)
  return string.char(
    math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256,
    math.floor(n / 256) % 256, n % 256)
end

local function read_be32(s)
  local b1, b2, b3, b4 = s:byte(1, 4)
  return ((b1 * 256 + b2) * 256 + b3) * 256 + b4
end

--- Send one request; `callback(err, result)` runs on the main loop (vim.schedule).
--- `err` is nil or {code = ..., message = ...}.
function M.request(method, params, callback, opts)
  opts = opts or {}
  next_id = next_id + 1
  local id = next_id
  local pipe = uv.new_pipe(false)
  local done = false
  local buffer = ''
  local timer = uv.new_timer()

  local function finish(err, result)
    if done then return end
    done = true
    timer:stop()
    timer:close()
    if not pipe:is_closing() then pipe:close() end
    vim.schedule(function() callback(err, result) end)
  end

  timer:start(opts.timeout_ms or 30000, 0, function()
    finish({ code = 'timeout', message = 'the codectx daemon did not answer in time' })
  end)

  local path = opts.socket or M.socket_path()
  pipe:connect(path, function(connect_err)
    if connect_err then
      finish({ code = 'not_running',
               message = 'codectx daemon is not running (' .. path .. '): start it with '
                 .. '`codectxd start --detach`' })
      return
    end
    local body = vim.mpack.encode({
      v = PROTOCOL_VERSION, id = id, method = method,
      -- An empty Lua table encodes as an array: the daemon accepts that as "no params".
      params = params or vim.empty_dict(),
    })
    pipe:write(be32(#body) .. body)
    pipe:read_start(function(read_err, chunk)
      if read_err then
        finish({ code = 'io', message = read_err })
        return
      end
      if chunk == nil then
        finish({ code = 'io', message = 'the daemon closed the connection' })
        return
      end
      buffer = buffer .. chunk
      if #buffer >= 4 then
        local length = read_be32(buffer)
        if #buffer >= 4 + length then
          local reply = vim.mpack.decode(buffer:sub(5, 4 + length))
          if reply.ok then
            finish(nil, reply.result)
          else
            local e = reply.error or {}
            finish({ code = e.code or 'internal', message = e.message or 'unknown error' })
          end
        end
      end
    end)
  end)
end

return M
