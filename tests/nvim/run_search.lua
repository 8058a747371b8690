-- Headless test driver: run :CodectxSearch (or $CODECTX_TEST_COMMAND) and :CodectxStatus
-- through the plugin, dump results.
local root = os.getenv('CODECTX_TEST_ROOT')
local query = os.getenv('CODECTX_TEST_QUERY')
local out = os.getenv('CODECTX_TEST_OUT')
vim.cmd('cd ' .. vim.fn.fnameescape(root))
vim.cmd('edit ' .. vim.fn.fnameescape(root .. '/README.md'))

local messages = {}
vim.notify = function(msg) table.insert(messages, msg) end

local finished = false
vim.cmd((os.getenv('CODECTX_TEST_COMMAND') or 'CodectxSearch') .. ' ' .. query)
-- The command is asynchronous: wait for the quickfix list to be filled.
vim.wait(60000, function()
  return #vim.fn.getqflist() > 0 or #messages > 0
end, 50)
local qf = {}
for _, item in ipairs(vim.fn.getqflist()) do
  table.insert(qf, { file = vim.fn.bufname(item.bufnr), lnum = item.lnum, text = item.text,
                     end_lnum = item.end_lnum })
end
local title = vim.fn.getqflist({ title = 1 }).title

local status_done = false
require('codectx').status(function() status_done = true end)
vim.wait(30000, function() return status_done end, 50)

local f = io.open(out, 'w')
f:write(vim.fn.json_encode({ qf = qf, title = title, messages = messages }))
f:close()
vim.cmd('qall!')
