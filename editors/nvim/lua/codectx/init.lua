-- codectx for Neovim: search the always-fresh code index of the codectx daemon.
local client = require('codectx.client')
local M = {}

M.config = { limit = 30, wait_s = 2, socket = nil, root_markers = { '.git', '.hg', '.jj' } }

function M.setup(opts)
  M.config = vim.tbl_extend('force', M.config, opts or {})
end

local function notify(msg, level)
  vim.notify('codectx: ' .. msg, level or vim.log.levels.INFO)
end

--- The repository of the current buffer: the nearest parent with a VCS marker, else the cwd.
function M.repo_root()
  local name = vim.api.nvim_buf_get_name(0)
  local dir = (name ~= '' and vim.fn.fnamemodify(name, ':p:h')) or vim.fn.getcwd()
  local current = dir
  while current and current ~= '' do
    for _, marker in ipairs(M.config.root_markers) do
      if vim.loop.fs_stat(current .. '/' .. marker) then
        return vim.fn.resolve(current)
      end
    end
    local parent = vim.fn.fnamemodify(current, ':h')
    if parent == current then break end
    current = parent
  end
  return vim.fn.resolve(vim.fn.getcwd())
end

local function first_line(content)
  for line in (content or ''):gmatch('[^\n]+') do
    local trimmed = line:gsub('^%s+', '')
    if trimmed ~= '' then return trimmed end
  end
  return ''
end

local function to_quickfix(result)
  local items = {}
  for _, hit in ipairs(result.results or {}) do
    local label = (hit.symbol ~= nil and hit.symbol ~= '') and (hit.symbol .. ': ') or ''
    table.insert(items, {
      filename = hit.repo .. '/' .. hit.path,
      lnum = hit.start_line,
      end_lnum = hit.end_line,
      text = label .. first_line(hit.content),
    })
  end
  return items
end

local function opts()
  return { socket = M.config.socket, timeout_ms = (M.config.wait_s + 30) * 1000 }
end

--- Register `root` with the daemon (it starts indexing and watching it).
function M.add(root, callback)
  client.request('add', { path = root }, function(err, result)
    if err then
      notify('cannot add ' .. root .. ': ' .. err.message, vim.log.levels.ERROR)
    elseif callback then
      callback(result)
    else
      notify((result.added and 'indexing ' or 'already indexed: ') .. result.repo.root)
    end
  end, opts())
end

--- Search the current repository and fill the quickfix list.
function M.search(query, on_done)
  if query == nil or query == '' then
    notify('usage: :CodectxSearch {query}', vim.log.levels.WARN)
    return
  end
  local root = M.repo_root()
  local params = { query = query, repos = { root }, limit = M.config.limit,
                   wait_s = M.config.wait_s }
  local function run(retried)
    client.request('search', params, function(err, result)
      if err and err.code == 'not_found' and not retried then
        -- First search in this repository: register it, then search what is indexed so far.
        M.add(root, function() run(true) end)
        return
      end
      if err then
        notify(err.message, vim.log.levels.ERROR)
        if on_done then on_done(err) end
        return
      end
      local items = to_quickfix(result)
      vim.fn.setqflist({}, ' ', { title = 'codectx: ' .. query, items = items })
      if #items > 0 then
        vim.cmd('copen')
      end
      local note = ''
      if not result.fresh then
        note = result.pending > 0
          and string.format(' (index not complete: %d files pending)', result.pending)
          or ' (index not complete: a scan for changed files is running)'
      end
      notify(string.format('%d results%s', #items, note))
      if on_done then on_done(nil, result) end
    end, opts())
  end
  run(false)
end

--- Ask `method` about `name` (default: the word under the cursor) in the current repository
--- and fill the quickfix list with `to_item` of each of the reply's `key` entries.
local function name_query(method, key, name, title, to_item, on_done)
  if name == nil or name == '' then
    name = vim.fn.expand('<cword>')
  end
  if name == '' then
    notify('give a name, or put the cursor on one', vim.log.levels.WARN)
    return
  end
  local params = { name = name, repos = { M.repo_root() }, wait_s = M.config.wait_s }
  client.request(method, params, function(err, result)
    if err then
      notify(err.message, vim.log.levels.ERROR)
      if on_done then on_done(err) end
      return
    end
    local items = {}
    for _, entry in ipairs(result[key] or {}) do
      table.insert(items, to_item(entry))
    end
    vim.fn.setqflist({}, ' ', { title = 'codectx: ' .. title .. ' ' .. name, items = items })
    if #items == 1 and method == 'symbols' then
      vim.cmd('cfirst')
    elseif #items > 0 then
      vim.cmd('copen')
    end
    notify(string.format('%d %s %s', #items, title, name))
    if on_done then on_done(nil, result) end
  end, opts())
end

--- Where `name` is defined: the definitions in the quickfix list (one alone: jump to it).
function M.symbol(name, on_done)
  name_query('symbols', 'symbols', name, 'definitions of', function(s)
    return { filename = s.repo .. '/' .. s.path, lnum = s.def_line, end_lnum = s.end_line,
             text = s.kind .. ' ' .. s.qualified_name .. ': ' .. s.signature }
  end, on_done)
end

--- Where `name` occurs: the references in the quickfix list, each with its definition.
function M.refs(name, on_done)
  name_query('references', 'references', name, 'references to', function(r)
    local owner = (r.enclosing ~= '' and (' [' .. r.enclosing .. ']')) or ''
    return { filename = r.repo .. '/' .. r.path, lnum = r.line, col = r.column,
             text = r.text .. owner }
  end, on_done)
end

--- Show the indexing state of the current repository.
function M.status(on_done)
  local root = M.repo_root()
  client.request('status', { repo = root }, function(err, result)
    if err then
      notify(err.message, err.code == 'not_found' and vim.log.levels.WARN or vim.log.levels.ERROR)
      if on_done then on_done(err) end
      return
    end
    local repo = result.repos[1].repo
    local line = string.format('%s: %s, %d files, %d chunks, %d pending', repo.root, repo.state,
      repo.files_indexed, repo.chunks, repo.files_pending)
    local p = repo.progress
    if p ~= nil and p ~= vim.NIL and p.files_total and p.files_total > 0 then
      line = line .. string.format(' — %d%% (%d/%d files)',
        math.floor(100 * p.files_done / p.files_total), p.files_done, p.files_total)
    end
    -- The second phase: every file is keyword-searchable, the dense side fills in.
    local e = repo.embedding
    if e ~= nil and e ~= vim.NIL then
      line = line .. string.format(', %d%% embedded (%d/%d chunks', math.floor(100 * (repo.embedded or 0)),
        e.chunks_embedded, e.chunks_total)
      if e.eta_s ~= nil and e.eta_s ~= vim.NIL then
        line = line .. string.format(', ETA %ds', math.floor(e.eta_s))
      end
      line = line .. ')'
    end
    notify(line)
    if on_done then on_done(nil, result) end
  end, opts())
end

return M
