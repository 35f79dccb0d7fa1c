/**
 * The memory weaver service. For now it only starts a gRPC server that answers the standard health service
 * (grpc.health.v1.Health). The later issue adds {@code memgen.v1.Weaver/Session}: one bidirectional session
 * per generation in which the reasoner appends its prefix rows (input embeddings, or last-layer hidden states
 * when so configured) and asks for latents at the prompt/answer boundary and at triggered delimiters; the
 * service runs the weaver from memgen-model (LoRA on q_proj/v_proj of a base LM, reasoner-to-weaver and
 * weaver-to-reasoner projections, prompt and inference query sets) over an incremental prefix cache, returns K
 * latent rows in the reasoner's hidden size, and hot-swaps weaver versions published on the memgen.adapters
 * topic. memgen.v1.Weaver is deliberately not registered until then (no UNIMPLEMENTED stub).
 */
package dev.memgen.weaver;
