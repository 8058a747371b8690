-- :CodectxSearch {query}  search the current repository, results in the quickfix list
-- :CodectxSymbol [name]   where name (default: the word under the cursor) is defined
-- :CodectxRefs [name]     where name (default: the word under the cursor) occurs
-- :CodectxStatus          indexing progress of the current repository
-- :CodectxAdd [path]      register a repository (default: the current one)
if vim.g.loaded_codectx then return end
vim.g.loaded_codectx = true

vim.cmd([[
  command! -nargs=+ CodectxSearch lua require('codectx').search(<q-args>)
  command! -nargs=? CodectxSymbol lua require('codectx').symbol(<q-args>)
  command! -nargs=? CodectxRefs lua require('codectx').refs(<q-args>)
  command! -nargs=0 CodectxStatus lua require('codectx').status()
  command! -nargs=? -complete=dir CodectxAdd lua require('codectx').add(<q-args> ~= '' and vim.fn.fnamemodify(<q-args>, ':p') or require('codectx').repo_root())
]])
