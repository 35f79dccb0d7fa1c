package dev.memgen.reasoner;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;

/** Plain unit test (no Quarkus, no native code): a token per byte, like a byte-level vocabulary. */
class IncrementalTextTest {
  private static String bytesToText(int[] ids) {
    byte[] b = new byte[ids.length];
    for (int i = 0; i < ids.length; i++) {
      b[i] = (byte) ids[i];
    }
    return new String(b, StandardCharsets.UTF_8);
  }

  @Test
  void multiByteCharactersAreHeldBackUntilComplete() {
    byte[] utf8 = "aé世".getBytes(StandardCharsets.UTF_8); // 1 + 2 + 3 bytes
    IncrementalText text = new IncrementalText(IncrementalTextTest::bytesToText);
    StringBuilder pieces = new StringBuilder();
    String[] expected = {"a", "", "é", "", "", "世"};
    for (int i = 0; i < utf8.length; i++) {
      String piece = text.add(utf8[i] & 0xff, i == utf8.length - 1);
      assertEquals(expected[i], piece, "piece " + i);
      pieces.append(piece);
    }
    assertEquals("aé世", pieces.toString());
  }

  @Test
  void theLastTokenFlushesAnIncompleteCharacter() {
    IncrementalText text = new IncrementalText(IncrementalTextTest::bytesToText);
    assertEquals("a", text.add('a', false));
    assertEquals("", text.add(0xE4, false));
    assertEquals("\uFFFD", text.add(0xB8, true));
  }

  @Test
  void withoutATokenizerEveryPieceIsEmpty() {
    IncrementalText text = new IncrementalText(null);
    assertEquals("", text.add(65, false));
    assertEquals("", text.add(66, true));
  }

  @Test
  void piecesAddUpToTheWholeDecodingForAnyText() {
    java.util.SplittableRandom r = new java.util.SplittableRandom(3);
    for (int trial = 0; trial < 50; trial++) {
      StringBuilder source = new StringBuilder();
      for (int i = 0; i < 40; i++) {
        source.appendCodePoint(switch (r.nextInt(4)) {
          case 0 -> 'a' + r.nextInt(26);
          case 1 -> 0xe0 + r.nextInt(30); // 2 bytes
          case 2 -> 0x4e00 + r.nextInt(500); // 3 bytes
          default -> 0x1f600 + r.nextInt(50); // 4 bytes
        });
      }
      byte[] utf8 = source.toString().getBytes(StandardCharsets.UTF_8);
      IncrementalText text = new IncrementalText(IncrementalTextTest::bytesToText);
      StringBuilder pieces = new StringBuilder();
      for (int i = 0; i < utf8.length; i++) {
        String piece = text.add(utf8[i] & 0xff, i == utf8.length - 1);
        assertEquals(-1, piece.indexOf('\uFFFD'), "no piece shows half a character");
        pieces.append(piece);
      }
      assertEquals(source.toString(), pieces.toString());
    }
  }
}
