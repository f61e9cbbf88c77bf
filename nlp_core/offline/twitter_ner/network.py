"""The tagger network on top of the frozen encoder (a torch Module, built on demand)."""

from __future__ import annotations

from typing import Any

from nlp_core.offline.twitter_ner.tokens import SHAPES


def build_tagger(n_layers: int, dim: int, n_words: int, n_chars: int, n_labels: int,
                  hidden: int, dropout: float) -> Any:
    """The tagger on top of the frozen encoder (a torch Module).

    Per word: a learned mix of the encoder's layers (first subword), a word embedding learned
    from the training vocabulary, a character CNN and the word shape, fed to a BiLSTM.
    """
    import torch
    from torch import nn

    class EncoderBiLSTMTagger(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer_weights = nn.Parameter(torch.zeros(n_layers))
            self.word_embeddings = nn.Embedding(n_words, 100, padding_idx=0)
            self.char_embeddings = nn.Embedding(n_chars, 30, padding_idx=0)
            self.char_cnn = nn.Conv1d(30, 50, kernel_size=3, padding=1)
            self.shape_embeddings = nn.Embedding(len(SHAPES), 16)
            self.dropout = nn.Dropout(dropout)
            self.lstm = nn.LSTM(dim + 100 + 50 + 16, hidden, batch_first=True,
                                bidirectional=True)
            self.classifier = nn.Linear(2 * hidden, n_labels)

        def forward(self, feats: Any, word_ids: Any, char_ids: Any, shape_ids: Any,
                    lengths: Any) -> Any:
            batch, words, chars = char_ids.shape
            mix = torch.softmax(self.layer_weights, dim=0)
            contextual = (feats.float() * mix[None, None, :, None]).sum(dim=2)
            c = self.char_embeddings(char_ids.reshape(batch * words, chars)).transpose(1, 2)
            c = torch.relu(self.char_cnn(c)).max(dim=2).values.reshape(batch, words, -1)
            x = torch.cat([contextual, self.word_embeddings(word_ids), c,
                           self.shape_embeddings(shape_ids)], dim=-1)
            packed = nn.utils.rnn.pack_padded_sequence(
                self.dropout(x), lengths, batch_first=True, enforce_sorted=False)
            out, _ = self.lstm(packed)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True,
                                                      total_length=words)
            return self.classifier(self.dropout(out))

    return EncoderBiLSTMTagger()
