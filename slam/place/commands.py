"""The `slam vocab` command: `slam vocab train IMAGES... --out FILE` (the work is in slam.place.training)."""

from __future__ import annotations

import sys
import time


def add_commands(sub) -> None:
    """Add `vocab` (with its `train` subcommand) to the `slam` command's subparsers."""
    vocab = sub.add_parser("vocab", help="bag-of-words vocabularies for place recognition")
    actions = vocab.add_subparsers(dest="vocab_command", required=True)
    train = actions.add_parser("train", help="train a vocabulary tree on the features of images")
    train.add_argument("images", nargs="+", help="image files and folders of images")
    train.add_argument("--out", required=True, metavar="FILE", help="vocabulary file to write (.npz)")
    train.add_argument("--features", default="orb", help="feature type (orb, sift, rootsift, superpoint, xfeat)")
    train.add_argument("--n-features", type=int, default=1000, help="features per image (default 1000)")
    train.add_argument("--weights", default=None, help="weights of a learned extractor")
    train.add_argument("--k", type=int, default=10, help="branching factor (default 10)")
    train.add_argument("--levels", type=int, default=5, help="tree depth (default 5: up to k^5 words)")
    train.add_argument(
        "--max-descriptors",
        type=int,
        default=None,
        metavar="N",
        help="cluster a random subset of N descriptors (IDF still counts every image)",
    )
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(func=cmd_vocab_train)


def cmd_vocab_train(args) -> int:
    from slam.config import FeaturesConfig
    from slam.errors import SlamInputError
    from slam.place.training import image_paths, train_from_images

    if args.k < 2 or args.levels < 1 or (args.max_descriptors is not None and args.max_descriptors < args.k):
        raise SlamInputError("need --k >= 2, --levels >= 1 and --max-descriptors >= k")
    paths = image_paths(args.images)
    features = FeaturesConfig(type=args.features, n_features=args.n_features, weights=args.weights)
    started = time.perf_counter()

    def progress(done: int) -> None:
        if done % 50 == 0 or done == len(paths):
            print(f"features: {done}/{len(paths)} images", file=sys.stderr)

    vocab = train_from_images(paths, features, args.k, args.levels, args.max_descriptors, args.seed, progress)
    vocab.save(args.out)
    print(
        f"vocabulary: {vocab.n_words} words ({vocab.kind}, k={vocab.branching}, levels={vocab.levels}) from "
        f"{vocab.info['descriptors']} descriptors of {len(paths)} images in {time.perf_counter() - started:.1f} s; "
        f"written to {args.out}"
    )
    return 0
