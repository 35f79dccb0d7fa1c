/**
 * The memory weaver service: {@code memgen.v1.Weaver/Session} over gRPC, a thin Quarkus layer over
 * {@link dev.memgen.rpc.WeaverService} (memory-rpc), which runs the weaver of memgen-model. One bidirectional
 * session per generation: the reasoner appends its sequence (token ids; latents by reference to the weave that
 * made them) and asks for K latent rows at the prompt/answer boundary and at triggered delimiters. With an experience
 * log and an adapter store configured, {@link dev.memgen.rpc.AdapterFollower} swaps in the adapter versions the
 * trainer announces on Kafka while serving; a session keeps the version it opened with.
 */
package dev.memgen.weaver;
