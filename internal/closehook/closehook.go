// Package closehook lets package turnkeep (the module's root) hand a memory
// it made the things it opened for it, without an exported name in package
// memory that an application could misuse.
package closehook

// Set makes the first Close of m (a *memory.PersistentBufferMemory) call
// closeFn once, after the memory itself is closed; Close then returns the
// errors of both, joined. Package memory sets it when it is initialized, so
// any package importing memory may call it.
var Set func(m any, closeFn func() error)
